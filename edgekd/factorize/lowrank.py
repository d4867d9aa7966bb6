"""Low-rank factorization as one call on a model: ``factorize_model(model, example, reduction=0.4)``.

Every eligible ``Conv2d`` (spatial SVD, Jaderberg et al. 2014, or Tucker-2, Kim et al. 2016) and
``Linear`` (truncated SVD) is a candidate; the per-layer ranks meet a whole-model MAC target by
retained energy, a uniform MAC fraction, or AIMET-style greedy selection scored by ``score``
(accuracy on held-out *training* images, never the validation set). Depthwise and grouped convs
and layers whose rank would not cut MACs are left whole, with the reason.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgekd import measure
from edgekd.errors import FactorizeError
from edgekd.factorize import select
from edgekd.factorize.decompose import decompose, set_module
from edgekd.factorize.layers import Method, macs_at_rank, method_for, rank_for_macs, why_not
from edgekd.models.tracing import trace_layers

CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
KEPT_WHOLE = "the selection kept it whole (cutting it cost too much accuracy or was not needed for the target)"


class Selection(str, enum.Enum):
    ENERGY = "energy"
    UNIFORM = "uniform"
    GREEDY = "greedy"


@dataclass(frozen=True)
class FactorizeResult:
    """The factorized copy, the rank per factorized layer, and a choice (with reason) for every layer."""

    model: nn.Module
    plan: dict[str, tuple[str, int]]  # layer → (method, rank): what rebuilds the architecture
    choices: list[select.Choice]


def factorize_model(model: nn.Module, example: torch.Tensor, *, reduction: float | None = 0.4,
                    energy: float | None = None, conv: Method = Method.SPATIAL_SVD, linear: bool = True,
                    selection: Selection = Selection.GREEDY, score: Callable[[nn.Module], float] | None = None,
                    candidates: tuple[float, ...] = CANDIDATES, skip: tuple[str, ...] = (),
                    round_to: int = 1) -> FactorizeResult:
    """A copy of ``model`` with low-rank layers removing ``reduction`` of its MACs (``model`` is untouched).

    Args:
        example: one input batch, e.g. ``torch.zeros(1, 3, 224, 224)``.
        reduction: fraction of the MACs to remove; or ``None`` with ``selection=energy`` and ``energy``.
        conv: ``spatial-svd`` or ``tucker2`` for convolutions; ``linear``: also SVD the Linear layers.
        score: greedy selection's judge, e.g. accuracy on held-out training images (required for greedy).
        candidates: per-layer MAC fractions greedy selection tries.
        skip: layer name patterns to leave alone; ``round_to``: ranks are multiples of this.
    """
    if selection is Selection.GREEDY and score is None:
        raise FactorizeError("greedy selection needs a score function (accuracy on held-out training images)")
    factorized = copy.deepcopy(model).eval()
    total = measure.count_macs(factorized, tuple(example.shape[1:]))
    layers, choices = eligible_layers(factorized, example, conv, linear, skip)
    plan, effects = choose_ranks(factorized, layers, total, reduction=reduction, energy=energy, selection=selection,
                                 score=score, candidates=candidates, multiple=round_to)
    for name, (layer, method) in layers.items():
        if name in plan:
            set_module(factorized, name, decompose(layer, method, plan[name]))
            choices.append(select.Choice(name, method.value, plan[name], layer.macs,
                                         macs_at_rank(layer, method, plan[name]), effects.get(name)))
        else:
            choices.append(select.Choice(name, method.value, None, layer.macs, layer.macs, effects.get(name),
                                         skipped=KEPT_WHOLE))
    return FactorizeResult(factorized, {n: (layers[n][1].value, r) for n, r in plan.items()}, choices)


def rebuild(model: nn.Module, example: torch.Tensor, plan: dict[str, tuple[str, int]]) -> nn.Module:
    """A copy of ``model`` with the architecture ``plan`` describes (weights: load the saved ones into it)."""
    model = copy.deepcopy(model)
    layers = {layer.name: layer for layer in trace_layers(model, example)}
    for name, (method, rank) in plan.items():
        set_module(model, name, decompose(layers[name], Method(method), rank))
    return model


def eligible_layers(model: nn.Module, example: torch.Tensor, conv: Method, linear: bool, skip: tuple[str, ...]):
    """({name: (layer, method)} to consider, [skipped choices with the reason])."""
    candidates, skipped = {}, []
    for layer in trace_layers(model, example):
        method = method_for(layer, conv)
        reason = "Linear layers are excluded (linear: false)" if method is Method.SVD and not linear \
            else why_not(layer, method, skip)
        if reason:
            skipped.append(select.Choice(layer.name, method.value, None, layer.macs, layer.macs, skipped=reason))
        else:
            candidates[layer.name] = (layer, method)
    if not candidates:
        raise FactorizeError("no layer can be factorized (" + "; ".join(f"{c.layer}: {c.skipped}" for c in skipped)
                             + ")")
    return candidates, skipped


def choose_ranks(model: nn.Module, layers, total: int, *, reduction: float | None, energy: float | None,
                 selection: Selection, score, candidates: tuple[float, ...],
                 multiple: int) -> tuple[select.Plan, dict[str, float]]:
    """The rank per layer, and (greedy) each chosen cut's accuracy effect on the scoring images."""
    if energy is not None:
        return select.by_energy(layers, energy, multiple), {}
    needed = round(reduction * total)
    reachable = select.saved_macs(layers, select.by_fraction(layers, min(candidates), multiple))
    if reachable < needed:
        raise FactorizeError(f"factorizable layers can save at most {reachable / total:.2%} of the MACs, not the "
                             f"{100 * reduction:g}% asked for; lower reduction, or prune as well")
    if selection is not Selection.GREEDY:
        make_plan = (lambda e: select.by_energy(layers, e, multiple)) if selection is Selection.ENERGY else \
            (lambda f: select.by_fraction(layers, f, multiple))
        plan = select.search(make_plan, layers, needed, low=0.0, high=1.0)
        return select.give_back_slack(layers, plan, needed, multiple), {}
    scores = select.sensitivity(model, layers, candidates, score, multiple)
    baseline = score(model)
    plan = select.greedy(layers, scores, needed, multiple)
    most_harmed = sorted(plan, key=lambda n: min(scores[n].values(), default=baseline))
    plan = select.give_back_slack(layers, plan, needed, multiple, most_harmed)
    effects = {}
    for name, rank in plan.items():
        layer, method = layers[name]
        fraction = next((f for f in scores[name] if rank_for_macs(layer, method, f, multiple) == rank), None)
        if fraction is not None:
            effects[name] = round(scores[name][fraction] - baseline, 4)
    return plan, effects
