"""The search loop: score candidates within the time budget, keep the Pareto front, check the finalists.

Every scored candidate is written to ``FOLDER/candidates.json`` as soon as it is scored, so an
interrupted search resumes where it stopped (``resume``); the finalists' full recoveries are
written to ``FOLDER/finalists.json`` the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from edgekd import console
from edgekd.atomic import write_json
from edgekd.data import DataBundle
from edgekd.errors import ConfigError, EdgekdError, SearchError, UserFunctionError
from edgekd.metrics import resolve_metric
from edgekd.search.evaluate import Evaluator, Scored
from edgekd.search.space import Budget, Goal
from edgekd.targets import TargetProfile


@dataclass
class SearchOutcome:
    """The pick (None when nothing met the budget), everything scored, the front and the finalists."""

    budget: Budget
    pick: Scored | None
    candidates: list[Scored]
    pareto: list[str]
    finalists: list[dict] = field(default_factory=list)  # scored on the selection split, with why each won or lost
    original: dict = field(default_factory=dict)
    seconds: float = 0.0
    pick_margin: dict | None = None  # an accuracy budget's pick: how far inside it, against sampling error

    def to_dict(self) -> dict:
        return {"goal": self.budget.describe(), "batch": self.budget.batch,
                "max_accuracy_drop_points": self.budget.max_accuracy_drop, "latency_budget_ms": self.budget.latency_ms,
                "original": self.original, "candidates": [c.to_dict() for c in self.candidates],
                "pareto": self.pareto, "finalists": self.finalists,
                "pick": self.pick.key if self.pick else None, "pick_margin": self.pick_margin,
                "seconds": round(self.seconds, 1)}


def search_compression(original: nn.Module, data: DataBundle, target: TargetProfile, budget: Budget, *,
                       folder: Path, students: dict[str, nn.Module] | None = None, resume: bool = False,
                       progress: bool = False, metric=None, loss=None, cache_dir: Path | None = None) -> SearchOutcome:
    """Search ``budget``'s space for ``original`` (and the trained ``students``, by name) on ``target``;
    see :mod:`edgekd.search`. ``metric`` (default top-1) is what accuracy means; the budget's
    ``max_accuracy_drop`` is in its points; ``loss`` replaces cross-entropy in the recoveries; ``cache_dir``
    is where recoveries cache their teacher's logits (None: not cached)."""
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    chosen = resolve_metric(metric)
    if budget.margin_se and chosen.accumulator().items() is None:  # pooled (mIoU) or a user's: no per-image scores
        raise ConfigError(f"margin_se needs a metric that is a mean over images (top1) to take a standard error of; "
                          f"{chosen.name} is not: drop margin_se or use top1")
    evaluator = Evaluator(original, data, target, budget, students=students, progress=progress, metric=metric,
                          loss=loss, cache_dir=cache_dir)
    try:
        scored = score_candidates(evaluator, budget, folder / "candidates.json", resume=resume)
        original_row = {"proxy_accuracy": evaluator.original_accuracy,
                        "accuracy": evaluator.original_selection_accuracy()}
        finalists = check_finalists(evaluator, budget, scored, original_row, folder / "finalists.json", resume)
    finally:
        evaluator.close()
    pick = next((f for f in finalists if f["won"]), None)
    outcome = SearchOutcome(budget, Scored(**pick["scored"]) if pick else None, scored, pareto_front(scored),
                            finalists, original_row, time.perf_counter() - start)
    if pick is None:
        raise SearchError(nothing_met(outcome))
    outcome.pick_margin = pick_margin(outcome.pick, budget, original_row["accuracy"], evaluator.metric)
    if outcome.pick_margin and outcome.pick_margin["at_edge"]:
        m = outcome.pick_margin
        console.warn(f"search: {outcome.pick.key} is {m['points']:.2f} points inside the "
                     f"{budget.max_accuracy_drop:g}-point budget on the selection split, less than one standard error "
                     f"of its drop there ({m['standard_error_points']:.2f} points): on other images it may miss the "
                     "budget; --margin-se 1 (Budget(margin_se=1)) keeps a standard error from the edge")
    return outcome


def pick_margin(pick: Scored, budget: Budget, reference: float, metric) -> dict | None:
    """How far an accuracy budget's pick sits inside the budget on the selection split, against the paired
    standard error of its drop there (the same images scored by both models). A pick closer to the edge
    than one standard error met the budget on these images and may not on others: ``at_edge``. A metric
    that is no mean over items has no standard error here (``None``)."""
    if budget.goal is not Goal.FASTEST_WITHIN_DROP:
        return None
    margin = budget.max_accuracy_drop - drop_points(reference, pick.accuracy, metric.points_per_unit)
    se = None if pick.drop_se is None else metric.points_per_unit * pick.drop_se
    return {"points": round(margin, 4), "standard_error_points": None if se is None else round(se, 4),
            "at_edge": None if se is None else margin < se, "margin_se": budget.margin_se}


def score_candidates(evaluator: Evaluator, budget: Budget, path: Path, *, resume: bool) -> list[Scored]:
    """Score every candidate not scored before, cheapest first, until the time budget is spent."""
    done = {row["key"]: Scored(**row) for row in json.loads(path.read_text())} if resume and path.exists() else {}
    if done:
        console.info(f"search: reusing {len(done)} scored candidates from {path}")
    start = time.perf_counter()
    candidates = budget.candidates(tuple(evaluator.bases))
    for candidate in candidates:
        if candidate.key in done:
            continue
        if time.perf_counter() - start > budget.seconds:
            console.warn(f"search: the time budget ({budget.seconds:g} s) is spent; "
                         f"{sum(c.key not in done for c in candidates)} candidates not scored")
            break
        try:
            done[candidate.key] = evaluator.score(candidate)
        except UserFunctionError:  # the user's metric or loss failed: every candidate would, say so at once
            raise
        except EdgekdError as error:  # e.g. a reduction the rounded channels cannot reach
            done[candidate.key] = Scored.of(candidate, accuracy=0.0, latency_ms=None, latency_kind="none",
                                            speedup=0.0, macs=0, params=0, seconds=0.0, error=str(error))
            console.info(f"search: {candidate.describe()}: skipped ({error})")
        write_json(path, [s.to_dict() for s in done.values()])
    return list(done.values())


def drop_points(reference: float, accuracy: float, per_unit: float = 100.0) -> float:
    """Points of the metric lost (``per_unit`` points in one unit: 100 for top-1 and mIoU), rounded so that a
    drop of exactly the budget counts as within it (100 * (0.9361 - 0.9261) is 1.0000000000000009)."""
    return round(per_unit * (reference - accuracy), 6)


def feasible(scored: Scored, budget: Budget, reference: float, per_unit: float = 100.0) -> bool:
    """Within the budget; for an accuracy budget, a finalist (whose drop has a standard error) also keeps
    ``budget.margin_se`` standard errors from its edge."""
    if scored.error:
        return False
    if budget.goal is Goal.FASTEST_WITHIN_DROP:
        return drop_points(reference, scored.accuracy, per_unit) + margin_points(scored, budget, per_unit) \
            <= budget.max_accuracy_drop
    return scored.latency_ms <= budget.latency_ms


def margin_points(scored: Scored, budget: Budget, per_unit: float = 100.0) -> float:
    """The margin ``scored`` must keep from an accuracy budget's edge: margin_se paired standard errors of
    its drop (0 for a proxy score, which has none)."""
    if not budget.margin_se or scored.drop_se is None:
        return 0.0
    return round(budget.margin_se * per_unit * scored.drop_se, 6)


def ranked(scored: list[Scored], budget: Budget, reference: float, per_unit: float = 100.0) -> list[Scored]:
    """Feasible candidates, best first by the budget's objective (speed-up, or accuracy)."""
    ok = [s for s in scored if feasible(s, budget, reference, per_unit)]
    ok = [s for s in ok if twin_of(s, ok) is None]  # its float twin is the same model with a simpler plan
    if budget.goal is Goal.FASTEST_WITHIN_DROP:
        return sorted(ok, key=lambda s: (-s.speedup, -s.accuracy))
    return sorted(ok, key=lambda s: (-s.accuracy, s.latency_ms))


def check_finalists(evaluator: Evaluator, budget: Budget, scored: list[Scored], original: dict, path: Path,
                    resume: bool) -> list[dict]:
    """Full recovery and a selection-split check for the best few by proxy, and for an accuracy budget the
    nearest misses faster than them; the best that fits on the selection split wins."""
    done = {row["scored"]["key"]: row for row in json.loads(path.read_text())} if resume and path.exists() else {}
    rows: list[dict] = []
    unit = evaluator.metric.points_per_unit

    def finalize(proxy: Scored, label: str) -> list[Scored]:
        row = done.get(proxy.key)
        if row is None:
            console.info(f"search: {label} {proxy.key}: {budget.recovery_epochs} epochs of recovery, selection check")
            row = {"scored": evaluator.finalize(proxy.candidate).to_dict(), "proxy_accuracy": proxy.accuracy,
                   "near_miss": label == "near miss"}
        rows.append(row)
        write_json(path, rows)
        return ranked([Scored(**r["scored"]) for r in rows], budget, original["accuracy"], unit)

    best: list[Scored] = []
    for proxy in ranked(scored, budget, original["proxy_accuracy"], unit):
        best = finalize(proxy, "finalist")
        if len(rows) >= budget.finalists and best:  # more only while no finalist holds on the selection split
            break
    if budget.goal is Goal.FASTEST_WITHIN_DROP:
        for proxy in near_misses(scored, budget, original["proxy_accuracy"], best[0].speedup if best else 0.0,
                                 per_unit=unit):
            finalize(proxy, "near miss")
    finals = [Scored(**r["scored"]) for r in rows]
    best = ranked(finals, budget, original["accuracy"], unit)
    for row, final in zip(rows, finals):
        row["won"] = bool(best) and final.key == best[0].key
        row["why"] = why(final, best[0] if best else None, budget, original["accuracy"], unit)
    return rows


def twin_of(scored: Scored, others: list[Scored]) -> Scored | None:
    """The float candidate among ``others`` that ships what ``scored`` ships (an int8 candidate that ships float)."""
    twin = scored.float_twin
    if twin is None:
        return None
    return next((o for o in others if o.candidate == twin and not o.error), None)


def near_misses(scored: list[Scored], budget: Budget, reference: float, faster_than: float, *,
                per_unit: float = 100.0) -> list[Scored]:
    """The fastest ``budget.near_misses`` candidates faster than ``faster_than`` that miss the accuracy budget
    on the proxy by less than the budget again: the short proxy fine-tune under-rates compressed models,
    so they get the finalists' full recovery before the search concludes nothing faster holds."""
    close = [s for s in scored if not s.error and s.speedup > faster_than
             and not feasible(s, budget, reference, per_unit)
             and drop_points(reference, s.accuracy, per_unit) <= 2 * budget.max_accuracy_drop]
    close = [s for s in close if twin_of(s, close) is None]
    return sorted(close, key=lambda s: (-s.speedup, -s.accuracy))[:budget.near_misses]


def why(final: Scored, best: Scored | None, budget: Budget, reference: float, per_unit: float = 100.0) -> str:
    drop = drop_points(reference, final.accuracy, per_unit)
    said = f"selection accuracy {final.accuracy:.4f} ({abs(drop):.2f} points {'lost' if drop > 0 else 'gained'}), " \
           f"{final.latency_ms:.3f} ms {final.latency_kind} ({final.speedup:.2f}× the original)"
    if not feasible(final, budget, reference, per_unit):
        limit = f"the {budget.max_accuracy_drop:g}-point budget" if budget.goal is Goal.FASTEST_WITHIN_DROP \
            else f"the {budget.latency_ms:g} ms budget"
        margin = margin_points(final, budget, per_unit)
        if margin and drop <= budget.max_accuracy_drop:
            limit += (f" with its {budget.margin_se:g}-standard-error margin ({drop:.2f} + {margin:.2f} points > "
                      f"{budget.max_accuracy_drop:g})")
        return f"lost: {said} misses {limit}"
    if best is not None and final.key == best.key:
        return f"won: {said}"
    twin = twin_of(final, [best] if best is not None else [])
    if twin is not None:
        return (f"lost: {said}; its quantize stage ships float (int8 does not pay on this target): the same model "
                f"as {twin.key}, whose plan has no quantize stage")
    better = "faster" if budget.goal is Goal.FASTEST_WITHIN_DROP else "more accurate"
    return f"lost: {said}; {best.key} is {better} within the budget"


def pareto_front(scored: list[Scored]) -> list[str]:
    """Keys of the candidates no other is both faster and more accurate than (proxy accuracy)."""
    ok = [s for s in scored if not s.error]
    return [s.key for s in ok if not any(o.speedup >= s.speedup and o.accuracy >= s.accuracy
                                         and (o.speedup > s.speedup or o.accuracy > s.accuracy) for o in ok)]


def nothing_met(outcome: SearchOutcome) -> str:
    """One line: the budget, and the nearest thing the search found."""
    ok = [s for s in outcome.candidates if not s.error]
    if not ok:
        return "no candidate could be built: " + "; ".join(sorted({s.error for s in outcome.candidates if s.error}))[:300]
    if outcome.budget.goal is Goal.MOST_ACCURATE_WITHIN_LATENCY:
        fastest = min(ok, key=lambda s: s.latency_ms)
        return (f"nothing in the search space runs within {outcome.budget.latency_ms:g} ms at batch "
                f"{outcome.budget.batch}: the fastest is {fastest.key} at {fastest.latency_ms:.3f} ms "
                f"({fastest.latency_kind}); raise the budget or add larger reductions")
    best = max(ok, key=lambda s: s.accuracy)
    return (f"nothing in the search space stays within {outcome.budget.max_accuracy_drop:g} points on the "
            f"selection split after recovery: the closest is {best.key}; raise max_accuracy_drop or "
            "recovery_epochs")
