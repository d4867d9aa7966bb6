"""2:4 semi-structured sparsity: in every group of four input channels, two weights are zero.

NVIDIA Ampere and later Tensor Cores (so Jetson Orin) run such layers with sparse kernels
when TensorRT builds with sparsity enabled (Mishra et al. 2021, "Accelerating Sparse Deep
Neural Networks"; NVIDIA's ASP recipe). The recipe: keep the two largest-magnitude weights
of each group, fix the mask, fine-tune the rest. A CPU runtime executes the same weights
densely, so no CPU measurement can show the speed-up.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn.utils import parametrize

GROUP = 4
KEEP = 2
WIDE_ENOUGH = 256  # channels below which TensorRT's sparse kernels rarely beat dense ones


class FixedMask(nn.Module):
    """A weight parametrization ``w ↦ w · mask`` with a constant mask (masked weights stay zero)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def eligible(module: nn.Module) -> bool:
    """Dense convs and linears whose input channels come in whole groups of four."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.in_channels % GROUP == 0
    return isinstance(module, nn.Linear) and module.in_features % GROUP == 0


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest |w| of each 4 consecutive input channels (dim 1), per output and position."""
    moved = weight.detach().movedim(1, -1)  # [out, (kh, kw,) in]
    groups = moved.abs().reshape(-1, GROUP)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.topk(KEEP, dim=1).indices, True)
    return keep.reshape(moved.shape).movedim(-1, 1).to(weight.dtype)


def sparsify(model: nn.Module, skip: set[str] = frozenset()) -> list[str]:
    """Mask every eligible layer (not in ``skip``) to 2:4, masks fixed; returns the layer names."""
    names = []
    for name, module in model.named_modules():
        if name in skip or not eligible(module):
            continue
        parametrize.register_parametrization(module, "weight", FixedMask(two_four_mask(module.weight)))
        names.append(name)
    return names


def bake(model: nn.Module) -> nn.Module:
    """Replace the parametrized weights by their masked values (plain tensors for saving and export)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def is_two_four(weight: np.ndarray, axis: int) -> bool:
    """Whether every group of 4 along ``axis`` has at most 2 non-zeros."""
    if weight.shape[axis] % GROUP:
        return False
    moved = np.moveaxis(weight, axis, -1).reshape(-1, GROUP)
    return bool(((moved != 0).sum(axis=1) <= KEEP).all())


def onnx_two_four_weights(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(2:4-sparse, dense) weight names of the graph's Conv and Gemm nodes with 4k input channels."""
    from edgekd.quantize.graph import GraphView  # weights may sit behind a DequantizeLinear (int8)

    view = GraphView(model)
    sparse, dense = [], []
    for node in view.nodes:
        weight = view.weight_of(node) if node.op_type in ("Conv", "Gemm") else None
        if weight is None:
            continue
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 0 if node.op_type == "Gemm" and not trans_b else 1
        if weight.shape[axis] % GROUP:
            continue
        (sparse if is_two_four(weight, axis) else dense).append(node.name or node.input[1])
    return sparse, dense


def narrow_layers(model: nn.Module, names: list[str]) -> list[str]:
    """Of ``names``, the layers narrower than TensorRT's sparse kernels need to pay off."""
    modules = dict(model.named_modules())
    def width(m: nn.Module) -> int:
        return min(getattr(m, "in_channels", getattr(m, "in_features", 0)),
                   getattr(m, "out_channels", getattr(m, "out_features", 0)))
    return [n for n in names if width(modules[n]) < WIDE_ENOUGH]
