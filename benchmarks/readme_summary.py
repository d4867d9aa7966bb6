"""The README's results summary: one row per published result, each linking to its docs page."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the readme_* modules beside it

from readme_format import find, gap, lines, report, res, search_label, spread  # noqa: E402


def short_uncertainty(x: dict) -> str:
    """An estimate's caveat in a few words (the reports and docs carry the full one)."""
    if x.get("outside_validated_range"):
        return "unvalidated for a model of this size"
    if x.get("uncertainty_pct") is None:
        return "unvalidated"
    return f"±{x['uncertainty_pct']:.0f}% on {x.get('held_out_measurements', 0)} held-out published rows"


def default_job_rows(r: Mapping) -> list[str]:
    jet, host = r[report("default", "jetson-orin")], r[report("default", "host")]
    stage = {s["name"]: s for s in jet["stages"]}
    teacher, student = stage["teacher"], stage["distill"]
    latency = lambda rep: next(s for s in rep["stages"] if s["name"] == "benchmark")["latency"]  # noqa: E731
    est = [x for x in latency(jet) if x["kind"] == "estimated"]
    meas = [x for x in latency(host) if x["kind"] == "measured"]
    chain = (f"{teacher['params'] / 1000:.0f}K-param teacher ({teacher['accuracy']:.2%}) → "
             f"{student['params'] / 1000:.0f}K student")
    return [
        f"| default job, `jetson-orin` ([example](docs/getting-started.md#what-the-demo-does)) | {chain}, ships "
        f"{jet['summary']['precision']} | {jet['summary']['accuracy']:.2%} | *estimated* "
        + ", ".join(f"{x['ms']:.3f} ms (b{x['batch']})" for x in est)
        + (f"; {short_uncertainty(est[0])}" if est else "") + " |",
        f"| default job, `host` | {chain}, ships {host['summary']['precision']} | {host['summary']['accuracy']:.2%} | "
        "measured " + ", ".join(f"{x['ms']:.3f} ms (b{x['batch']})" for x in meas) + " |"]


def stage_rows(r: Mapping) -> list[str]:
    d = r[res("distill_fashion_mnist")]
    full = d["full_data_rows"]
    best, alone = max(full, key=lambda x: x["accuracy_mean"]), find(full, "full_data_rows", method="alone")
    p = find(r[res("prune_fashion_mnist")]["rows"], "prune_fashion_mnist.json", name="cnn-l2")
    f = r[res("factorize_fashion_mnist")]["rows"]
    q = find(r[res("quantize_fashion_mnist")]["rows"], "quantize_fashion_mnist.json", name="teacher-cpu-ptq")
    return [
        f"| [distillation](docs/results/distill.md), full data | {best['method'].upper()} into the "
        f"{best['params'] / 1000:.0f}K student, against the student alone | {best['accuracy_mean']:.2%} vs "
        f"{alone['accuracy_mean']:.2%} | – |",
        f"| [pruning](docs/results/prune.md), 50% of MACs | the teacher, KD recovery | "
        f"{p['accuracy_recovered']:.2%} (−{gap(p['accuracy_before'], p['accuracy_recovered'])}) | "
        f"{p['latency_speedup_b64']:.2f}× faster (b64), {p['latency_speedup_b1']:.2f}× (b1), measured |",
        f"| [factorization](docs/results/factorize.md), 40% of MACs | the teacher, {len(f)} methods | "
        f"{spread([x['accuracy_recovered'] for x in f], '.2%')} | "
        f"{spread([x['latency_speedup_b64'] for x in f], '.2f')}× faster (b64), measured |",
        f"| [int8](docs/results/quantize.md), CPU scheme | the teacher, PTQ | {q['accuracy_int8']:.2%} "
        f"(−{q['drop_points']:.2f}) | {q['latency_ratio_b1']:.2f}× / {q['latency_ratio_b64']:.2f}× the float time "
        f"(b1 / b64), measured |"]


def segmentation_row(r: Mapping) -> str:
    g = r[res("segmentation")]
    c, b64 = g["chain"], g["latency"]["batch_64"]
    return (f"| [segmentation](docs/results/segmentation.md), generated shapes | `{g['teacher']['model']}` "
            f"({g['teacher']['miou'] * 100:.1f} mIoU) → distilled `{g['distillation']['student']}`, pruned 30%, int8 | "
            f"{c['int8']['miou'] * 100:.1f} mIoU | {b64['int8']['speedup_vs_teacher']:.2f}× the teacher's speed (b64; "
            f"float pruned {b64['pruned']['speedup_vs_teacher']:.2f}×), measured |")


def search_rows(r: Mapping) -> list[str]:
    s = r[res("search_fashion_mnist")]
    out = []
    for target, t in s.get("summary", {}).items():
        runs = f"{t['runs']} run{'s' if t['runs'] != 1 else ''}"
        acc, speed = t["pick_accuracy"], t["speedup_vs_default"]
        mine = [x for x in s.get("rows", []) if search_label(x) == target]
        kinds = {(x.get("latency") or "estimated").split()[0] for x in mine}
        kind = "measured" if kinds == {"measured"} else "estimated"  # the Jetson rows are the estimator's
        shown = search_label(mine[0], markdown=True) if mine else f"`{target}`"
        out.append(
            f"| [budget search](docs/results/search.md), ≤ {s.get('max_accuracy_drop_points', 1):g} point, {shown} "
            f"| its pick ({runs}{'; median' if t['runs'] > 1 else ''}) | {acc['median']:.2%} "
            f"(−{t['drop_points']['median']:.2f}) | {speed['median']:.2f}× the speed of the default recipe's student "
            f"(b{s.get('batch', 64)}){': slower' if speed['median'] < 1 else ''}, {kind} |")
    return out


def estimator_row(r: Mapping) -> str:
    e = r[res("estimator_devices")]
    method = "nested leave-one-model-out" if e.get("variants") else "leave-one-model-out"
    return (f"| [Jetson latency estimator](docs/results/estimators.md) | {method} over {e['row_count']} "
            f"published rows | – | median error {e['lomo_median_abs_rel_error']:.1%} (target "
            f"{e['lomo_target']:.0%}: {'met' if e['lomo_target_met'] else '**not met**'}) |")


def summary(r: Mapping) -> str:
    """The README's table: the default job, each stage's benchmark, segmentation, the search and the estimator."""
    return lines("| result | what | accuracy (report split) | latency |", "|---|---|---:|---|",
                 default_job_rows(r), stage_rows(r), segmentation_row(r), search_rows(r), estimator_row(r))
