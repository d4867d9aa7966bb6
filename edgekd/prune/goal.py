"""Channel pruning to a goal, as one call on a model: ``prune_model(model, example, reduction=0.5)``.

The goal is a fraction of a metric to remove (MACs, parameters, host latency, or the channel
ratio itself); the per-layer channel counts come from :func:`edgekd.prune.search.search_allocation`
(a joint allocation across layers), rounded to a channel multiple so the runtime's fast kernels
still apply. A goal no rounded architecture reaches within ``tolerance`` is refused with the
reductions that are reachable and the settings that would reach it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from edgekd.judge import output_shapes
from edgekd import measure
from edgekd.errors import PruneError
from edgekd.prune.importance import Importance, accumulate_gradients
from edgekd.prune.search import SearchResult, search_allocation
from edgekd.prune.structured import ChannelPruning, check_forward, copy_with_gradients, protected_layers, prune_channels


class Metric(str, enum.Enum):
    MACS = "macs"
    PARAMS = "params"
    LATENCY = "latency"  # host ONNX Runtime latency, measured side by side
    CHANNELS = "channels"  # the channel ratio itself, no search


class Scope(str, enum.Enum):
    UNIFORM = "uniform"  # about the same fraction of channels kept in every layer
    GLOBAL = "global"  # the least important channels per MAC saved go first, wherever they are


@dataclass(frozen=True)
class PruneResult:
    """The pruned copy, the reduction of the metric it reached, the channels removed and kept per layer."""

    model: nn.Module
    reduction: float
    channel_ratio: float
    how: ChannelPruning
    kept: dict[str, int]
    notes: tuple[str, ...] = ()  # layers kept whole because torch-pruning could not prune them


def prune_model(model: nn.Module, example: torch.Tensor, *, reduction: float = 0.5, metric: Metric = Metric.MACS,
                importance: Importance = Importance.L2, scope: Scope = Scope.UNIFORM, round_to: int = 8,
                protect: tuple[str, ...] = (), tolerance: float = 0.05, gradients: DataLoader | None = None,
                gradient_batches: int = 8, latency: Callable[[nn.Module], float] | None = None) -> PruneResult:
    """A copy of ``model`` with channels removed until ``reduction`` of ``metric`` is gone (``model`` is untouched).

    Args:
        model: any ``nn.Module`` torch-pruning can trace (residuals, concatenations, splits, groups).
        example: one input batch, e.g. ``torch.zeros(1, 3, 224, 224)``.
        reduction: fraction of the metric to remove, met within ``tolerance`` (relative) or refused.
        importance: channel ranking (``taylor`` needs ``gradients``: a loader of training batches).
        scope: about the same fraction kept in every layer, or the least important channels per MAC first.
        round_to: channel counts are multiples of this (the target runtime's channel blocking).
        protect: layers whose outputs keep every channel (``first``, ``last``, shell patterns).
        latency: for ``metric=latency``, a function giving a candidate's latency as a fraction of the original's.
    """
    if metric is Metric.LATENCY and latency is None:
        raise PruneError("metric: latency needs a latency function (the prune stage times candidates on this host)")
    how = ChannelPruning(importance=importance, global_ranking=scope is Scope.GLOBAL, round_to=round_to,
                         protect=tuple(protected_layers(model, example, protect)))
    if importance.needs_gradients:
        if gradients is None:
            raise PruneError("importance: taylor needs training batches to compute gradients; pass gradients=loader")
        accumulate_gradients(model, gradients, gradient_batches)
    try:
        if metric is Metric.CHANNELS:
            pruned = prune_channels(copy_with_gradients(model), example, reduction, how)
            check_forward(pruned, example, output_shapes(model(example)))
            result = SearchResult(pruned, reduction, 1 - reduction)
        else:
            result = search_allocation(model, example, 1 - reduction, fraction_kept(model, example, metric, latency),
                                       how, modeled=None if metric is Metric.LATENCY else metric.value,
                                       tolerance=tolerance * reduction, iterations=8 if metric is Metric.LATENCY else 12)
    finally:
        model.zero_grad(set_to_none=True)
    achieved = 1 - result.remaining
    if abs(achieved - reduction) > tolerance * reduction:
        advice = result.hint or "; try a smaller round_to, fewer protected layers or another reduction"
        raise PruneError(f"pruning reached a {metric.value} reduction of {achieved:.1%}, not the {reduction:.0%} asked "
                         f"for (±{tolerance:.0%}) with channels in multiples of {round_to}{advice}")
    return PruneResult(result.model, achieved, result.channel_ratio, how, result.kept, result.notes)


def fraction_kept(model: nn.Module, example: torch.Tensor, metric: Metric,
                  latency: Callable[[nn.Module], float] | None) -> Callable[[nn.Module], float]:
    """The fraction of the metric a pruned candidate keeps."""
    shape = tuple(example.shape[1:])
    if metric is Metric.MACS:
        before = measure.count_macs(model, shape)
        return lambda m: measure.count_macs(m, shape) / before
    if metric is Metric.PARAMS:
        before = measure.count_params(model)
        return lambda m: measure.count_params(m) / before
    return latency
