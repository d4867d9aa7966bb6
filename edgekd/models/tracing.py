"""The conv and linear layers a forward pass runs, in order, with their per-image shapes and MACs.

Compression stages decide per layer (which to protect, how far to cut); they need the layers
as the model really uses them, which only a forward pass shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Layer:
    """A conv or linear layer as the forward pass saw it (sizes per image, batch dropped)."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def macs(self) -> int:
        m = self.module
        if isinstance(m, nn.Linear):
            return m.in_features * m.out_features
        kh, kw = m.kernel_size
        return self.output_shape[1] * self.output_shape[2] * m.out_channels * m.in_channels // m.groups * kh * kw


def trace_layers(model: nn.Module, example: torch.Tensor) -> list[Layer]:
    """Conv2d and Linear layers in forward order, with their per-image input and output shapes."""
    seen: dict[str, Layer] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module, inputs, output):
        name = names[module]
        if name not in seen:  # a layer used twice is described by its first use
            seen[name] = Layer(name, module, tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return list(seen.values())
