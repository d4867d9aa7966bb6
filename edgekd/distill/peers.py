"""Copies of a model for online and generational distillation: same architecture, own weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose layers are re-initialized (PyTorch's default init, seeded by ``seed``).

    Every submodule with ``reset_parameters`` (convs, linears, norms: BatchNorm's running
    statistics too) is reset; the global random state is left as it was.
    """
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in twin.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return twin


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy without gradients: a finished generation as the next one's teacher."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin
