"""Low-rank decompositions of single layers, each exact at full rank.

Every function takes a trained layer and ranks, and returns an ``nn.Sequential`` of cheaper
layers computing (approximately) the same function, with the original's stride, padding,
dilation and bias carried over.
"""

from __future__ import annotations

import torch
from torch import nn


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear`` → ``Linear(in, r)`` then ``Linear(r, out)`` by truncated SVD of the weight.

    W ≈ (U_r √S_r)(√S_r V_rᵀ): the best rank-r approximation in Frobenius norm (Eckart–Young);
    used for fully connected layers by Denton et al. 2014 and Xue et al. 2013.
    """
    u, s, vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    first.weight.data = (root[:, None] * vh[:rank]).to(layer.weight.dtype)
    second.weight.data = (u[:, :rank] * root).to(layer.weight.dtype)
    if layer.bias is not None:
        second.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, second)


def spatial_svd(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """``Conv2d`` k_h×k_w → a k_h×1 conv into ``rank`` channels, then a 1×k_w conv to the outputs.

    Jaderberg, Vedaldi & Zisserman 2014 ("Speeding up Convolutional Neural Networks with Low
    Rank Expansions", scheme 2), as in Qualcomm AIMET's spatial SVD: the kernel, unfolded to a
    (C_in·k_h) × (C_out·k_w) matrix, is split by truncated SVD. Stride, padding and dilation are
    split the same way: the vertical ones go to the first conv, the horizontal to the second.
    """
    weight = layer.weight.detach().double()  # [O, I, kh, kw]
    out_c, in_c, kh, kw = weight.shape
    matrix = weight.permute(1, 2, 0, 3).reshape(in_c * kh, out_c * kw)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    vertical = (u[:, :rank] * root).reshape(in_c, kh, rank).permute(2, 0, 1).unsqueeze(-1)  # [r, I, kh, 1]
    horizontal = (root[:, None] * vh[:rank]).reshape(rank, out_c, kw).permute(1, 0, 2).unsqueeze(2)  # [O, r, 1, kw]
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, _pair_padding(layer), layer.dilation
    first = nn.Conv2d(in_c, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), bias=False,
                      padding_mode=layer.padding_mode)
    second = nn.Conv2d(rank, out_c, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw),
                       bias=layer.bias is not None, padding_mode=layer.padding_mode)
    first.weight.data = vertical.to(layer.weight.dtype).contiguous()
    second.weight.data = horizontal.to(layer.weight.dtype).contiguous()
    if layer.bias is not None:
        second.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, second)


def tucker2(layer: nn.Conv2d, rank_in: int, rank_out: int) -> nn.Sequential:
    """``Conv2d`` → 1×1 conv to ``rank_in`` → k×k core ``rank_in``→``rank_out`` → 1×1 conv to the outputs.

    Kim et al. 2016 ("Compression of Deep Convolutional Neural Networks for Fast and Low Power
    Mobile Applications"): Tucker-2 decomposition of the kernel along its two channel modes,
    here by truncated higher-order SVD (the leading singular vectors of each mode's unfolding),
    computed with torch's own linear algebra.
    """
    weight = layer.weight.detach().double()  # [O, I, kh, kw]
    out_c, in_c, kh, kw = weight.shape
    rank_in, rank_out = min(rank_in, in_c, out_c * kh * kw), min(rank_out, out_c, in_c * kh * kw)
    u_out = torch.linalg.svd(weight.reshape(out_c, -1), full_matrices=False)[0][:, :rank_out]  # [O, r_out]
    u_in = torch.linalg.svd(weight.transpose(0, 1).reshape(in_c, -1), full_matrices=False)[0][:, :rank_in]  # [I, r_in]
    core = torch.einsum("oihw,or,is->rshw", weight, u_out, u_in)  # [r_out, r_in, kh, kw]
    first = nn.Conv2d(in_c, rank_in, 1, bias=False)
    middle = nn.Conv2d(rank_in, rank_out, (kh, kw), stride=layer.stride, padding=layer.padding,
                       dilation=layer.dilation, bias=False, padding_mode=layer.padding_mode)
    last = nn.Conv2d(rank_out, out_c, 1, bias=layer.bias is not None)
    first.weight.data = u_in.t().reshape(rank_in, in_c, 1, 1).to(layer.weight.dtype).contiguous()
    middle.weight.data = core.to(layer.weight.dtype).contiguous()
    last.weight.data = u_out.reshape(out_c, rank_out, 1, 1).to(layer.weight.dtype).contiguous()
    if layer.bias is not None:
        last.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, middle, last)


def _pair_padding(layer: nn.Conv2d) -> tuple[int, int]:
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return 0, 0
        raise ValueError("padding='same' cannot be split between two convs; give explicit padding")
    return layer.padding


def decompose(layer, method, rank: int) -> nn.Sequential:
    """The decomposition of a traced :class:`~edgekd.factorize.layers.Layer` by ``method`` at ``rank``."""
    from edgekd.factorize.layers import Method, tucker_ranks

    if method is Method.SVD:
        return svd_linear(layer.module, rank)
    if method is Method.SPATIAL_SVD:
        return spatial_svd(layer.module, rank)
    return tucker2(layer.module, *tucker_ranks(layer, rank))


def singular_values(layer, method) -> torch.Tensor:
    """The singular values the method truncates (Tucker-2: those of the output-channel unfolding)."""
    from edgekd.factorize.layers import Method

    weight = layer.module.weight.detach().double()
    if method is Method.SPATIAL_SVD:
        out_c, in_c, kh, kw = weight.shape
        weight = weight.permute(1, 2, 0, 3).reshape(in_c * kh, out_c * kw)
    return torch.linalg.svdvals(weight.reshape(weight.shape[0], -1))


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``name`` inside ``model``."""
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
