"""How many channels each coupled group keeps: a joint allocation under the rounding constraint.

A model's prunable channels fall into torch-pruning *groups* (a conv's filters with its
BatchNorm, its consumers' inputs, residual partners, concatenation slices). Each group keeps a
multiple of its ``step`` (the target's channel multiple, times the equal parts a grouped conv
or a ``chunk`` needs) and never less than ``1 - max_layer_ratio`` of its channels.

Bisecting one channel ratio for every layer, as before, moves every group at once: with
rounding, a small model has only a handful of reachable sizes, and the goal often falls
between two of them. Here the groups move one step at a time instead, so the reachable sizes
are as fine as one step of one group:

* ``uniform``: the group that is least pruned so far (largest fraction kept) goes next, so
  every layer keeps about the same fraction (a uniform ratio, rounded group by group);
* ``global``: the step that loses the least channel importance per MAC saved goes next
  (resource-aware ranking in the spirit of Molchanov et al. 2019 and Shen et al.'s HALP 2022).

Costs come from an exact per-layer model of MACs and parameters as functions of the kept
channel counts (a conv's MACs scale with its kept outputs times its kept inputs per group), so
thousands of candidate allocations are scored without pruning a copy; the caller prunes and
measures only the chosen one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from edgekd.errors import PruneError

CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.PReLU)


@dataclass(frozen=True)
class Effect:
    """Removing one channel of a group removes ``per`` channels of ``layer``'s outputs or inputs."""

    layer: str
    outputs: bool
    per: float


@dataclass(frozen=True)
class ChannelGroup:
    """One coupled set of channels, named by its root layer (the layer whose outputs it is)."""

    root: str
    channels: int
    parts: int  # equal parts the channels come in (grouped convs, chunk/split): each keeps the same count
    effects: tuple[Effect, ...]
    step: int = 1
    minimum: int = 1
    importance: tuple[float, ...] = ()  # per channel of one part, ascending, mean-normalized

    def rounded(self, round_to: int | None, max_layer_ratio: float) -> ChannelGroup:
        """This group with counts in multiples of ``round_to`` (and of its parts), at least ``1 - max_layer_ratio``."""
        step = math.lcm(round_to or 1, self.parts)
        minimum = max(step, math.ceil(self.channels * (1 - max_layer_ratio) / step) * step)
        return dataclasses.replace(self, step=step, minimum=minimum)

    def below(self, kept: int) -> int | None:
        """The next smaller allowed count, or None when the group cannot lose more."""
        lower = (kept - 1) // self.step * self.step
        return lower if lower >= self.minimum else None

    def above(self, kept: int) -> int | None:
        """The next larger allowed count, or None when the group is whole."""
        return None if kept >= self.channels else min(kept // self.step * self.step + self.step, self.channels)

    def importance_lost(self, kept: int, lower: int) -> float:
        if not self.importance:
            return 0.0
        per_part = self.channels // self.parts
        start, stop = (self.channels - kept) // self.parts, (self.channels - lower) // self.parts
        return sum(self.importance[start:stop]) * self.parts / per_part


@dataclass(frozen=True)
class LayerCost:
    """A conv/linear (or norm) layer's full sizes and the MACs and parameters they give."""

    outputs: int
    inputs: int
    macs: int  # over every call of the layer in one forward pass
    weight_params: int
    other_params: int  # bias, norm scale/shift: scale with the outputs
    depthwise: bool = False
    norm: bool = False


@dataclass
class CostModel:
    """MACs and parameters of the model as functions of each group's kept channel count."""

    layers: dict[str, LayerCost]
    groups: list[ChannelGroup]
    fixed_macs: int
    fixed_params: int
    total_macs: int = field(init=False)
    total_params: int = field(init=False)

    def __post_init__(self):
        self.total_macs, self.total_params = self.cost([g.channels for g in self.groups])

    def cost(self, kept: list[int]) -> tuple[float, float]:
        removed_out: dict[str, float] = {}
        removed_in: dict[str, float] = {}
        for group, k in zip(self.groups, kept):
            if k == group.channels:
                continue
            for effect in group.effects:
                target = removed_out if effect.outputs else removed_in
                target[effect.layer] = target.get(effect.layer, 0.0) + (group.channels - k) * effect.per
        macs, params = float(self.fixed_macs), float(self.fixed_params)
        for name, layer in self.layers.items():
            out = max(layer.outputs - removed_out.get(name, 0.0), 0.0) / layer.outputs
            if layer.norm or layer.depthwise:
                out = min(out, max(layer.outputs - removed_in.get(name, 0.0), 0.0) / layer.outputs)
                macs += layer.macs * out
                params += (layer.weight_params + layer.other_params) * out
                continue
            inp = max(layer.inputs - removed_in.get(name, 0.0), 0.0) / layer.inputs
            macs += layer.macs * out * inp
            params += layer.weight_params * out * inp + layer.other_params * out
        return macs, params

    def fraction(self, kept: list[int], *, params: bool = False) -> float:
        macs, count = self.cost(kept)
        return count / self.total_params if params else macs / self.total_macs


def layer_costs(model: nn.Module, example: torch.Tensor) -> dict[str, LayerCost]:
    """Sizes, MACs (summed over every call) and parameters of each conv, linear and norm layer."""
    names = {m: n for n, m in model.named_modules()}
    macs: dict[str, int] = {}

    def hook(module, inputs, output):
        per_output = module.in_features if isinstance(module, nn.Linear) else \
            module.in_channels // module.groups * math.prod(module.kernel_size)
        macs[names[module]] = macs.get(names[module], 0) + output[0].numel() * per_output

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, CONV_LINEAR)]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in hooks:
            h.remove()
    costs = {}
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, CONV_LINEAR):
            out = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            inp = module.in_features if isinstance(module, nn.Linear) else module.in_channels
            groups = getattr(module, "groups", 1)
            costs[name] = LayerCost(out, inp, macs.get(name, 0), module.weight.numel(), own - module.weight.numel(),
                                    depthwise=groups > 1 and groups == inp == out)
        elif isinstance(module, NORMS) and own:
            channels = module.weight.numel() if getattr(module, "weight", None) is not None else own
            costs[name] = LayerCost(channels, channels, 0, 0, own, norm=True)
    return costs


def channel_groups(pruner: tp.pruner.MetaPruner, model: nn.Module, *, round_to: int | None,
                   max_layer_ratio: float) -> list[ChannelGroup]:
    """The prunable groups torch-pruning finds in ``model``, with their rounding steps and effects."""
    names = {m: n for n, m in model.named_modules()}
    graph = pruner.DG
    found = []
    for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        if pruner._is_atten_group(group)[0]:
            continue  # attention heads: not searched here, left whole
        root = group[0].dep.target.module
        channels = graph.get_out_channels(root)
        if root not in names or not channels or channels < 2:
            continue
        parts = max([(pruner.out_channel_groups if graph.is_out_channel_pruning_fn(d.handler)
                      else pruner.in_channel_groups).get(d.target.module, 1) for d, _ in group] or [1])
        if channels % parts or feeds_grouped_conv_partly(group, graph):
            continue  # torch-pruning cannot keep such groups consistent: they stay whole
        effects = tuple(Effect(names[d.target.module], graph.is_out_channel_pruning_fn(d.handler), len(idxs) / channels)
                        for d, idxs in group if d.target.module in names)
        importance = ranked_importance(pruner, group, parts)
        found.append(ChannelGroup(names[root], channels, parts, effects, importance=importance
                                  ).rounded(round_to, max_layer_ratio))
    return found


def feeds_grouped_conv_partly(group, graph) -> bool:
    """The group is only part of a grouped conv's inputs (a concatenation before it).

    Equal channels per conv group would need the other inputs pruned in step; torch-pruning
    prunes each concatenated part alone and breaks the conv.
    """
    for dep, idxs in group:
        layer = dep.target.module
        if (isinstance(layer, nn.Conv2d) and 1 < layer.groups < layer.in_channels
                and graph.is_in_channel_pruning_fn(dep.handler) and len(idxs) != layer.in_channels):
            return True
    return False


def ranked_importance(pruner: tp.pruner.MetaPruner, group, parts: int) -> tuple[float, ...]:
    """The group's channel importances (one part's worth, averaged over parts), mean 1, ascending."""
    scores = pruner.estimate_importance(group)
    if scores is None:
        return ()
    scores = scores.detach().float().view(parts, -1).mean(0)
    return tuple(sorted((scores / scores.mean().clamp_min(1e-12)).tolist()))


def cost_model(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup], total_macs: int) -> CostModel:
    """The per-layer cost model, with what it does not model (pooling, attention matmuls...) held fixed."""
    costs = layer_costs(model, example)
    modeled_macs = sum(c.macs for c in costs.values())
    modeled_params = sum(c.weight_params + c.other_params for c in costs.values())
    total_params = sum(p.numel() for p in model.parameters())
    return CostModel(costs, groups, max(total_macs - modeled_macs, 0), total_params - modeled_params)


@dataclass(frozen=True)
class Allocation:
    """Kept channels per group (in the order of ``CostModel.groups``) and the modelled fraction of the metric left."""

    kept: tuple[int, ...]
    remaining: float


def next_step(model: CostModel, kept: list[int], global_ranking: bool, params: bool,
              floor: float = 0.0) -> tuple[int, float] | None:
    """The group that loses one step next and the fraction left after it, or None when none can.

    Steps that would leave less than ``floor`` are skipped, so a coarse group (a trunk whose one
    step removes a third of the MACs) gives way to finer ones near the goal.
    """
    best, best_key = None, None
    current = model.fraction(kept, params=params) if global_ranking else 0.0
    for i, group in enumerate(model.groups):
        lower = group.below(kept[i])
        if lower is None:
            continue
        trial = list(kept)
        trial[i] = lower
        left = model.fraction(trial, params=params)
        if left < floor:
            continue
        if global_ranking:
            saved = current - left
            key = (group.importance_lost(kept[i], lower) / max(saved, 1e-12), left)
        else:
            key = (-lower / group.channels, left)
        if best_key is None or key < best_key:
            best, best_key = (i, left), key
    return best


def trajectory(model: CostModel, *, global_ranking: bool, params: bool = False, goal: float = 0.0,
               floor: float = 0.0) -> list[Allocation]:
    """Allocations from the full model down, one group step at a time, until at most ``goal`` is left.

    Each step is the best by the scope's order among those leaving at least ``floor``.
    """
    kept = [g.channels for g in model.groups]
    path = [Allocation(tuple(kept), 1.0)]
    while path[-1].remaining > goal:
        step = next_step(model, kept, global_ranking, params, floor)
        if step is None:
            break
        i, left = step
        kept[i] = model.groups[i].below(kept[i])
        path.append(Allocation(tuple(kept), left))
    return path


def closest_allocation(model: CostModel, goal: float, *, global_ranking: bool, params: bool = False,
                       tolerance: float = 0.0) -> Allocation:
    """The allocation whose modelled fraction is nearest ``goal``.

    Groups step down in the scope's order; near the goal, steps that would overshoot it by more
    than ``tolerance`` are skipped in favour of finer ones, then single swaps close the gap. If
    the scope's order still misses, the other order is tried (an allocation that meets the goal
    beats one that keeps the order). Without one inside the tolerance, the scope's nearest wins.
    """
    tried = []
    for ranking in (global_ranking, not global_ranking):  # the other order only when the scope's own misses
        fine = trajectory(model, global_ranking=ranking, params=params, goal=goal, floor=goal - tolerance)
        free = trajectory(model, global_ranking=ranking, params=params, goal=goal)
        best = min([fine[-1], free[-1], free[-2] if len(free) > 1 else free[-1]], key=lambda a: abs(a.remaining - goal))
        tried.append(best if abs(best.remaining - goal) <= tolerance else refine(model, best, goal, params))
        if abs(tried[-1].remaining - goal) <= tolerance:
            return tried[-1]
    return tried[0]


def refine(model: CostModel, start: Allocation, goal: float, params: bool, rounds: int = 8) -> Allocation:
    """Move one group a step down and another a step up, while that brings the fraction nearer ``goal``."""
    best = start
    for _ in range(rounds):
        moves = []
        for i, down in enumerate(model.groups):
            lower = down.below(best.kept[i])
            if lower is None:
                continue
            for j, up in enumerate(model.groups):
                higher = up.above(best.kept[j]) if j != i else best.kept[j]
                if higher is None:
                    continue
                kept = list(best.kept)
                kept[i], kept[j] = lower, higher if j != i else lower
                moves.append(kept)
        scored = [Allocation(tuple(k), model.fraction(k, params=params)) for k in moves]
        nearest = min(scored, key=lambda a: abs(a.remaining - goal), default=best)
        if abs(nearest.remaining - goal) >= abs(best.remaining - goal):
            break
        best = nearest
    return best


def ratios_for(model: CostModel, allocation: Allocation) -> dict[str, float]:
    """torch-pruning per-root pruning ratios that keep exactly the allocated counts (no rounding there)."""
    ratios = {}
    for group, k in zip(model.groups, allocation.kept):
        if k < group.channels:
            per_part, kept_part = group.channels // group.parts, k // group.parts
            ratios[group.root] = 1 - (kept_part + 0.5) / per_part  # int(per_part * (1 - r)) == kept_part
    return ratios


def check_allocated(pruned: nn.Module, model: CostModel, allocation: Allocation) -> None:
    """Every root layer kept exactly its allocated outputs (else torch-pruning did something else)."""
    modules = dict(pruned.named_modules())
    for group, k in zip(model.groups, allocation.kept):
        layer = modules[group.root]
        out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        if out != k:
            raise PruneError(f"layer {group.root}: pruning kept {out} channels instead of the {k} allocated; "
                             f"protect {group.root!r} or use metric: channels")
