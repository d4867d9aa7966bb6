"""Rank selection: how far to cut each layer so the whole model meets a MAC target.

* ``energy``: each layer keeps the smallest rank retaining a fraction of its squared
  singular values; the fraction is searched so the model meets the target (or given).
* ``uniform``: every layer keeps the same fraction of its MACs.
* ``greedy``: Qualcomm AIMET's greedy compression-ratio selection. Each layer alone is cut
  to each candidate ratio and the model is scored on a validation subset; then an accuracy
  threshold is searched so that every layer takes its cheapest ratio still scoring above the
  threshold, and the cheapest such assignment that meets the target is kept. Layers whose
  cut barely hurts go far; sensitive layers stay nearly whole. The scoring runs on the run's
  device (:mod:`edgekd.device`): the model is moved there once, not once per candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgekd import device as devices
from edgekd.factorize.decompose import decompose, set_module, singular_values
from edgekd.factorize.layers import Layer, Method, full_rank, macs_at_rank, rank_for_macs, round_rank


@dataclass
class Choice:
    """One layer's decision, as the report shows it."""

    layer: str
    method: str
    rank: int | None
    macs_before: int
    macs_after: int
    accuracy_effect: float | None = None  # validation accuracy change with only this layer cut (greedy)
    skipped: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


Plan = dict[str, int]  # layer name → rank


def saved_macs(layers: dict[str, tuple[Layer, Method]], plan: Plan) -> int:
    return sum(layer.macs - macs_at_rank(layer, method, plan[name]) for name, (layer, method) in layers.items()
               if name in plan)


def worthwhile(layer: Layer, method: Method, rank: int) -> bool:
    return macs_at_rank(layer, method, rank) < layer.macs


def energy_rank(layer: Layer, method: Method, energy: float, multiple: int = 1) -> int:
    """The smallest rank (rounded up to ``multiple``) keeping ``energy`` of the squared singular values."""
    s2 = singular_values(layer, method) ** 2
    kept = int((s2.cumsum(0) / s2.sum() < energy).sum().item()) + 1
    return round_rank(layer, method, min(kept, full_rank(layer, method)), multiple)


def by_energy(layers, energy: float, multiple: int = 1) -> Plan:
    plan = {n: energy_rank(l, m, energy, multiple) for n, (l, m) in layers.items()}
    return {n: r for n, r in plan.items() if worthwhile(*layers[n], r)}


def by_fraction(layers, fraction: float | dict[str, float], multiple: int = 1) -> Plan:
    pick = (lambda n: fraction[n]) if isinstance(fraction, dict) else (lambda n: fraction)
    plan = {n: rank_for_macs(l, m, pick(n), multiple) for n, (l, m) in layers.items() if pick(n) < 1}
    return {n: r for n, r in plan.items() if worthwhile(*layers[n], r)}


def search(make_plan: Callable[[float], Plan], layers, needed: int, *, low: float, high: float,
           iterations: int = 30) -> Plan:
    """Bisect the knob of ``make_plan`` (a higher knob keeps more) for the highest value whose
    plan still saves ``needed`` MACs: the target met with as little cut as possible."""
    best = None
    for _ in range(iterations):
        knob = (low + high) / 2
        plan = make_plan(knob)
        if saved_macs(layers, plan) >= needed:
            best, low = plan, knob
        else:
            high = knob
    return best if best is not None else make_plan(low)


def give_back_slack(layers, plan: Plan, needed: int, multiple: int = 1, order: list[str] | None = None) -> Plan:
    """Raise ranks one multiple at a time, in ``order`` (most harmed layers first), while the plan
    still saves ``needed`` MACs: coarse ranks overshoot the target, and the overshoot is accuracy."""
    plan = dict(plan)
    changed = True
    while changed:
        changed = False
        for name in order or list(plan):
            if name not in plan:
                continue
            layer, method = layers[name]
            trial = dict(plan)
            bigger = plan[name] + multiple
            if bigger >= full_rank(layer, method) or not worthwhile(layer, method, bigger):
                del trial[name]
            else:
                trial[name] = bigger
            if saved_macs(layers, trial) >= needed:
                plan, changed = trial, True
    return plan


def sensitivity(model: nn.Module, layers, candidates: tuple[float, ...],
                evaluate: Callable[[nn.Module], float], multiple: int = 1, *,
                device: torch.device | None = None) -> dict[str, dict[float, float]]:
    """Validation score with each layer alone cut to each candidate MAC fraction (AIMET's eval dict).

    The model is scored on ``device`` (default: the run's) and ends where it was.
    """
    scores: dict[str, dict[float, float]] = {}
    with devices.placed(model, device) as device:
        for name, entry in layers.items():
            scores[name] = score_cuts(model, name, entry, candidates, evaluate, multiple, device=device)
    return scores


def score_cuts(model: nn.Module, name: str, entry: tuple[Layer, Method], candidates: tuple[float, ...],
               evaluate: Callable[[nn.Module], float], multiple: int, *, device: torch.device) -> dict[float, float]:
    """``evaluate(model)`` with layer ``name`` alone cut to each distinct worthwhile candidate rank (made on ``device``)."""
    layer, method = entry
    scores, seen = {}, set()
    for fraction in candidates:
        rank = rank_for_macs(layer, method, fraction, multiple)
        if not worthwhile(layer, method, rank) or rank in seen:
            continue
        seen.add(rank)
        set_module(model, name, decompose(layer, method, rank).to(device))
        try:
            scores[fraction] = evaluate(model)
        finally:
            set_module(model, name, layer.module)
    return scores


def greedy(layers, scores: dict[str, dict[float, float]], needed: int, multiple: int = 1) -> Plan:
    """The highest accuracy threshold whose per-layer cheapest passing ratios save ``needed`` MACs."""
    def plan_at(threshold: float) -> Plan:
        fractions = {}
        for name in layers:
            passing = [f for f, acc in scores.get(name, {}).items() if acc >= threshold]
            fractions[name] = min(passing) if passing else 1.0
        return by_fraction(layers, fractions, multiple)

    return search(plan_at, layers, needed, low=0.0, high=1.0)
