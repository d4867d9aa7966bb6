"""Which layers can be factorized, and what a given rank would cost.

MACs are counted per image from each layer's real input and output sizes (see
:mod:`edgekd.models.tracing`), so a rank can be chosen for a MAC budget without building the
decomposed layers.
"""

from __future__ import annotations

import enum
import fnmatch

from torch import nn

from edgekd.models.tracing import Layer


class Method(str, enum.Enum):
    SVD = "svd"  # Linear
    SPATIAL_SVD = "spatial-svd"  # Conv2d k×k
    TUCKER2 = "tucker2"  # Conv2d


def method_for(layer: Layer, conv_method: Method) -> Method:
    return Method.SVD if isinstance(layer.module, nn.Linear) else conv_method


def why_not(layer: Layer, method: Method, skip: tuple[str, ...]) -> str | None:
    """Why ``layer`` is left alone, or None when it can be factorized."""
    m = layer.module
    if any(fnmatch.fnmatch(layer.name, p) for p in skip):
        return "listed in skip"
    if isinstance(m, nn.Linear):
        return None if min(m.in_features, m.out_features) > 1 else "a single input or output has no rank to cut"
    if m.groups > 1:
        return "depthwise/grouped conv: each group is already a small dense kernel, no low-rank structure to exploit"
    if method is Method.SPATIAL_SVD and min(m.kernel_size) == 1:
        return "a 1×k or k×1 kernel has no second spatial axis to split"
    if isinstance(m.padding, str) and m.padding == "same":
        return "padding='same' cannot be split between two convs"
    return None


def full_rank(layer: Layer, method: Method) -> int:
    """The rank at which the decomposition is exact (Tucker-2: the output-channel rank)."""
    m = layer.module
    if method is Method.SVD:
        return min(m.in_features, m.out_features)
    kh, kw = m.kernel_size
    if method is Method.SPATIAL_SVD:
        return min(m.in_channels * kh, m.out_channels * kw)
    return min(m.out_channels, m.in_channels * kh * kw)


def tucker_ranks(layer: Layer, rank: int) -> tuple[int, int]:
    """Tucker-2 (rank_in, rank_out) for one rank knob: both channel modes cut by the same fraction.

    Each mode's full rank is bounded by its unfolding's other side (a 1-input-channel 3×3 conv
    has at most 9 independent filters), and at full rank on both modes the decomposition is exact.
    """
    m = layer.module
    kh, kw = m.kernel_size
    full_in = min(m.in_channels, m.out_channels * kh * kw)
    return max(1, round(full_in * rank / full_rank(layer, Method.TUCKER2))), rank


def macs_at_rank(layer: Layer, method: Method, rank: int) -> int:
    """MACs per image of the decomposed layer at ``rank``."""
    m = layer.module
    if method is Method.SVD:
        return rank * (m.in_features + m.out_features)
    kh, kw = m.kernel_size
    _, ho, wo = layer.output_shape
    if method is Method.SPATIAL_SVD:
        # The k_h×1 conv keeps the input width (no horizontal stride or padding), then the 1×k_w conv.
        w_mid = layer.input_shape[2]
        return rank * ho * w_mid * m.in_channels * kh + m.out_channels * ho * wo * rank * kw
    rank_in, rank_out = tucker_ranks(layer, rank)
    _, hi, wi = layer.input_shape
    return hi * wi * m.in_channels * rank_in + ho * wo * rank_out * rank_in * kh * kw + ho * wo * m.out_channels * rank_out


def rank_for_macs(layer: Layer, method: Method, fraction: float, multiple: int = 1) -> int:
    """The largest rank, a multiple of ``multiple``, costing at most ``fraction`` of the layer's MACs.

    Ranks become channel counts, so they are rounded like pruned channels (fast kernels block
    channels); when even one multiple is over budget, that smallest multiple is returned.
    """
    budget = fraction * layer.macs
    top = full_rank(layer, method) // multiple
    if top == 0:
        return full_rank(layer, method)
    low, high = 1, top
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if macs_at_rank(layer, method, mid * multiple) <= budget else (low, mid - 1)
    return low * multiple


def round_rank(layer: Layer, method: Method, rank: int, multiple: int) -> int:
    """``rank`` rounded up to a multiple of ``multiple``, at most the full rank."""
    return min(-(-rank // multiple) * multiple, full_rank(layer, method))
