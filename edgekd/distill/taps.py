"""Read a model's intermediate outputs (and block inputs) by module name, with forward hooks.

The model's code is untouched: ``with FeatureTaps(model, ["layer2", "layer3"]) as taps:``
runs the model, then ``taps.outputs["layer2"]`` holds that module's output of the last call.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from edgekd.errors import EdgekdError


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name lists the nearest module names."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    near = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.3)
    blocks = getattr(model, "blocks", ())
    hint = f"; nearest: {', '.join(near)}" if near else ""
    hint += f"; this model's blocks: {', '.join(blocks)}" if blocks else ""
    raise EdgekdError(f"{type(model).__name__} has no module '{name}'{hint}")


class FeatureTaps:
    """Forward hooks that keep the outputs (and optionally the inputs) of named modules."""

    def __init__(self, model: nn.Module, names, *, inputs: bool = False):
        self.modules = {name: find_module(model, name) for name in dict.fromkeys(names)}
        self.keep_inputs = inputs
        self.outputs: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "FeatureTaps":
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._keeper(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _keeper(self, name: str):
        def hook(module, args, output):
            self.outputs[name] = output
            if self.keep_inputs:
                self.inputs[name] = args[0]
        return hook
