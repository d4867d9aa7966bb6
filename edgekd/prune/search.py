"""Search the channel allocation that meets a MAC, parameter or latency goal, and prune to it.

The allocation (:mod:`edgekd.prune.allocation`) orders every rounded step of every channel
group; for MAC and parameter goals its cost model picks the allocation nearest the goal
directly, and one pruned copy confirms it by measurement. For latency goals (or when the
measurement disagrees with the model) the ordered allocations are bisected with real
measurements. When no allocation lands within the tolerance, the result says which
reductions are reachable and which settings would reach the goal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.judge import output_shapes
from edgekd import measure
from edgekd.errors import PruneError
from edgekd.prune.allocation import (
    Allocation,
    CostModel,
    check_allocated,
    channel_groups,
    closest_allocation,
    cost_model,
    ratios_for,
    trajectory,
)
from edgekd.prune.structured import (
    ChannelPruning,
    GroupPruneFailed,
    check_forward,
    copy_with_gradients,
    make_pruner,
    prune_channels,
)


@dataclass(frozen=True)
class SearchResult:
    model: nn.Module
    channel_ratio: float  # fraction of the prunable channels removed
    remaining: float  # the measured fraction of the goal's metric left, e.g. MACs after / before
    kept: dict[str, int] = dataclasses.field(default_factory=dict)  # root layer → channels kept
    hint: str = ""  # when the goal was missed: what is reachable, and the settings that reach it
    notes: tuple[str, ...] = ()  # layers kept whole because torch-pruning failed on them


def analyse(model: nn.Module, example: torch.Tensor, how: ChannelPruning) -> CostModel:
    """The model's channel groups (rounded as ``how`` says) and its MAC/parameter cost model."""
    pruner = make_pruner(model, example, how)
    groups = channel_groups(pruner, model, round_to=how.round_to, max_layer_ratio=how.max_layer_ratio)
    return cost_model(model, example, groups, measure.count_macs(model, tuple(example.shape[1:])))


def search_allocation(model: nn.Module, example: torch.Tensor, goal: float, fraction: Callable[[nn.Module], float],
                      how: ChannelPruning, *, modeled: str | None = "macs", tolerance: float = 0.005,
                      iterations: int = 12) -> SearchResult:
    """A pruned copy of ``model`` keeping ``goal`` of what ``fraction(pruned)`` measures, within ``tolerance``.

    ``modeled``: ``macs`` or ``params`` when the cost model predicts the metric; None (latency)
    when only measurement can tell, so the ordered allocations are bisected.
    """
    costs = analyse(model, example, how)
    notes: list[str] = []
    for _ in range(len(costs.groups) + 1):
        try:
            result = search_costs(model, example, goal, fraction, how, costs, modeled, tolerance, iterations)
            return dataclasses.replace(result, notes=tuple(notes))
        except GroupPruneFailed as failed:  # torch-pruning broke on one group: keep it whole and search again
            notes.append(f"layer {failed.layer} keeps all its channels: {failed}")
            costs = dataclasses.replace(costs, groups=[g for g in costs.groups if g.root != failed.layer])
    raise PruneError("torch-pruning failed on every channel group of this model; use metric: channels")


def search_costs(model: nn.Module, example: torch.Tensor, goal: float, fraction: Callable[[nn.Module], float],
                 how: ChannelPruning, costs: CostModel, modeled: str | None, tolerance: float,
                 iterations: int) -> SearchResult:
    """:func:`search_allocation` on an analysed model."""
    expected = output_shapes(model.eval()(example))
    params = modeled == "params"

    def realize(allocation: Allocation) -> SearchResult:
        candidate = copy_with_gradients(model)
        if allocation.kept != tuple(g.channels for g in costs.groups):
            prune_channels(candidate, example, 0.0, how, ratios_for(costs, allocation), exact=True)
            check_allocated(candidate, costs, allocation)
        check_forward(candidate, example, expected)
        kept = dict(zip((g.root for g in costs.groups), allocation.kept))
        removed = 1 - sum(allocation.kept) / max(sum(g.channels for g in costs.groups), 1)
        return SearchResult(candidate, removed, fraction(candidate), kept)

    if modeled is not None:
        choice = closest_allocation(costs, goal, global_ranking=how.global_ranking, params=params, tolerance=tolerance)
        result = realize(choice)
        if abs(result.remaining - goal) <= tolerance:
            return result
        if abs(result.remaining - choice.remaining) > tolerance / 4:  # the cost model is off here: measure instead
            result = bisect(trajectory(costs, global_ranking=how.global_ranking, params=params), goal, realize,
                            iterations)
    else:
        result = bisect(trajectory(costs, global_ranking=how.global_ranking, params=params), goal, realize, iterations)
    if abs(result.remaining - goal) > tolerance and modeled is not None:
        result = dataclasses.replace(result, hint=unreachable_hint(costs, goal, how, tolerance, params))
    return result


def bisect(path: list[Allocation], goal: float, realize: Callable[[Allocation], SearchResult],
           iterations: int) -> SearchResult:
    """Bisect the ordered allocations on the measured fraction; the measured closest to ``goal`` wins."""
    low, high = 0, len(path) - 1
    best = realize(path[high])
    if best.remaining > goal:
        return best
    for _ in range(iterations):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        result = realize(path[middle])
        if abs(result.remaining - goal) < abs(best.remaining - goal):
            best = result
        if result.remaining > goal:
            low = middle
        else:
            high = middle
    return best


def unreachable_hint(costs: CostModel, goal: float, how: ChannelPruning, tolerance: float, params: bool) -> str:
    """What is reachable near ``goal`` with these settings, and which other settings would reach it."""
    below = trajectory(costs, global_ranking=how.global_ranking, params=params, goal=goal)[-1]
    if below.remaining > goal:
        said = (f"; the most these settings can remove is {1 - below.remaining:.1%} (each layer keeps at least "
                f"one channel multiple and {1 - how.max_layer_ratio:.0%} of its channels"
                + (f"; protected: {', '.join(how.protect)}" if how.protect else "") + ")")
    else:
        above = trajectory(costs, global_ranking=how.global_ranking, params=params, goal=goal,
                           floor=goal - tolerance)[-1]
        said = (f"; the nearest reachable reductions are {1 - above.remaining:.1%} and "
                f"{1 - below.remaining:.1%}")
    fixes = settings_that_reach(costs, goal, how, tolerance, params)
    return said + (f"; {' or '.join(fixes)} would reach it" if fixes else "")


def settings_that_reach(costs: CostModel, goal: float, how: ChannelPruning, tolerance: float,
                        params: bool) -> list[str]:
    """The largest smaller channel multiple that reaches the goal on the cost model (both orders were tried)."""
    current = how.round_to or 1
    for round_to in (r for r in (current // 2, current // 4, 1) if 1 <= r < current):
        regrouped = dataclasses.replace(costs, groups=[g.rounded(round_to, how.max_layer_ratio) for g in costs.groups])
        choice = closest_allocation(regrouped, goal, global_ranking=how.global_ranking, params=params,
                                    tolerance=tolerance)
        if abs(choice.remaining - goal) <= tolerance:
            return [f"round_to: {round_to}"]
    return []
