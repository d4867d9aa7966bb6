"""The blocks of numbers in README.md and docs/: ``BLOCKS`` maps each block's name to the function that renders
it from the results (a mapping from a file's repository path to its parsed JSON)."""

from __future__ import annotations

import math
import re
import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the readme_* modules and summarize.py beside it

import summarize  # noqa: E402

from edgekd.records import describe_uncertainty  # noqa: E402

from readme_distill import (distill_findings, distill_full_data, distill_kd_seeds, distill_kd_sweep,  # noqa: E402
                            distill_lit_depth, distill_lit_findings, distill_long_budget,
                            distill_long_budget_findings, distill_main, distill_teacher_free)
from readme_format import find, gap, lines, report, res, search_label, spread  # noqa: E402
from readme_summary import summary  # noqa: E402


# ---------------------------------------------------------------- intro

def intro_example(r: Mapping) -> str:
    """The intro's example run: the jetson-orin and host default reports, and the teacher's training time."""
    jet, host, teacher = r[report("default", "jetson-orin")], r[report("default", "host")], r[res("teacher_fashion_mnist")]
    stages = {s["name"]: s for s in jet["stages"]}
    q = stages["quantize"]["details"]
    shipped = q.get("shipped", jet["summary"]["precision"])
    estimates = [x for x in stages["benchmark"]["latency"] if x["kind"] == "estimated"]
    est = " and ".join(f"{x['ms']:.3f} ms (batch {x['batch']}, "
                       f"{describe_uncertainty(x['kind'], x.get('uncertainty_pct'), x.get('held_out_measurements', 0), x.get('outside_validated_range', ''))})"
                       for x in estimates)
    hstages = {s["name"]: s for s in host["stages"]}
    measured = [x for x in hstages["benchmark"]["latency"] if x["kind"] == "measured"]
    return (f"`make demo` loads the default teacher edgekd ships (`weights/`, sha256-checked; "
            f"`benchmarks/teacher_fashion_mnist.py` trained it in {teacher['train_seconds'] / 60:.0f} minutes on 2 cores"
            f"{', ' + teacher['timing_note'] if teacher.get('timing_note') else ''}; `--train-teacher` trains it "
            f"instead), distils it into a {stages['distill']['params'] / 1000:.0f}K-parameter "
            f"student, quantizes it to int8 in the target's scheme and writes the run folder with `deploy/`. Measured "
            f"here with the teacher cached ({stages['teacher']['accuracy']:.2%}), all accuracies on the report split "
            f"(the 10,000-image test set, read once every choice was made): the jetson-orin job distilled a "
            f"{stages['distill']['params']:,}-parameter student to {stages['distill']['accuracy']:.2%} and quantized it to "
            f"signed, zero-point-0 int8 at {stages['quantize']['accuracy']:.2%} (ONNX Runtime); it ships {shipped}. "
            f"Jetson latency is *estimated* at {est}, never measured here. The `host` job ships "
            f"{host['summary']['precision']} at {host['summary']['accuracy']:.2%} and measured "
            + " and ".join(f"{x['ms']:.3f} ms (batch {x['batch']})" for x in measured)
            + " with ONNX Runtime on this 2-core machine. Their reports and the other profiles' are in `examples/default/`.")


# ---------------------------------------------------------------- pruning, factorization, int8

def prune_findings(r: Mapping) -> str:
    p = r[res("prune_fashion_mnist")]
    l2 = find(p["rows"], "prune_fashion_mnist.json", name="cnn-l2")
    tay = find(p["rows"], "prune_fashion_mnist.json", name="cnn-taylor-global")
    small = [x for x in p["rows"] if x["model"] != "cnn"]
    cut = [f"−{1 - x['macs_after'] / x['macs_before']:.1%}" for x in (l2, tay)]
    macs_text = f"the same MACs ({cut[0]}," if cut[0] == cut[1] else f"MACs {cut[0]} and {cut[1]} ("
    epochs = sorted({x["recovery_epochs"] for x in small})
    return lines(
        f"* The default teacher loses {gap(l2['accuracy_before'], l2['accuracy_recovered'])} points "
        f"({l2['accuracy_before']:.2%} → {l2['accuracy_recovered']:.2%}) at half its MACs after {l2['recovery_epochs']} "
        f"recovery epochs, and runs {l2['latency_speedup_b64']:.2f}× faster at batch 64 and {l2['latency_speedup_b1']:.2f}× "
        f"at batch 1 (its rounds at batch 64: {spread(l2['speedup_rounds']['b64'], '.3f')}×).",
        f"* The two `cnn` rows end with different channels (uniform {l2['importance']}: "
        f"{'/'.join(map(str, l2['channels_after']))}; global Taylor: {'/'.join(map(str, tay['channels_after']))}), "
        f"{macs_text} the nearest to half that channels in multiples of 16 allow) and {l2['latency_speedup_b64']:.2f}× / "
        f"{tay['latency_speedup_b64']:.2f}× at batch 64. Global Taylor recovered "
        f"{gap(l2['accuracy_recovered'], tay['accuracy_recovered'])} points less here.",
        f"* {' and '.join(x['model'] for x in small)} lose "
        + " and ".join(f"{gap(x['accuracy_before'], x['accuracy_recovered'], 1)}" for x in small)
        + f" points after {' / '.join(map(str, epochs))} recovery epochs and run "
        + " and ".join(f"{x['latency_speedup_b64']:.2f}×" for x in small) + " faster at batch 64.")


def factorize_findings(r: Mapping) -> str:
    f = r[res("factorize_fashion_mnist")]
    rows = f["rows"]
    row = lambda n: find(rows, "factorize_fashion_mnist.json", name=n)  # noqa: E731
    greedy, uniform, energy = row("greedy-spatial-svd"), row("uniform-spatial-svd"), row("energy-spatial-svd")
    ranks = lambda x: [l["rank"] for l in x["layers"] if l["rank"] is not None]  # noqa: E731
    worst = max(f["full_rank_max_rel_error"].values())
    within = max(f["teacher_accuracy"] - x["accuracy_recovered"] for x in rows) * 100
    same = ranks(greedy) == ranks(energy)
    b64_rounds = max(max(x["speedup_rounds"]["b64"]) - min(x["speedup_rounds"]["b64"]) for x in rows)
    return lines(
        f"* Every method is exact at full rank (largest error {worst:.0e}, float32 rounding).",
        f"* After recovery every row is within {within:.2f} points of the unfactorized teacher, and every factorized "
        f"model is {'faster' if min(x['latency_speedup_b1'] for x in rows) > 1 else 'not always faster'} on the host "
        f"({spread([x['latency_speedup_b64'] for x in rows], '.2f')}× at batch 64, "
        f"{spread([x['latency_speedup_b1'] for x in rows], '.2f')}× at batch 1; re-timed 2026-12-02 without thread "
        f"spinning, rounds within {b64_rounds:.2f}× at batch 64: the first run's ranged 1.24–1.54×).",
        f"* Greedy selection {'beats' if greedy['accuracy_factorized'] > uniform['accuracy_factorized'] else 'does not beat'} "
        f"uniform ratios before recovery: {greedy['accuracy_factorized']:.2%} vs {uniform['accuracy_factorized']:.2%}, "
        f"cutting {1 - greedy['macs_after'] / greedy['macs_before']:.1%} vs {1 - uniform['macs_after'] / uniform['macs_before']:.1%} "
        f"of the MACs. On this small model, greedy and energy selection picked "
        + (f"the **same ranks** ({'/'.join(map(str, ranks(greedy)))} for the factorized convs), so their rows differ "
           f"only by timing noise ({energy['latency_speedup_b64']:.2f}× and {greedy['latency_speedup_b64']:.2f}× at batch 64)"
           if same else f"different ranks (greedy {'/'.join(map(str, ranks(greedy)))}, energy "
                        f"{'/'.join(map(str, ranks(energy)))})")
        + "; the first conv (1 input channel) and the classifier are left alone by every selection (no rank rounded "
          "to 16 saves MACs there: the first conv has full rank 3, the classifier 10).")


def factorize_unrounded(r: Mapping) -> str:
    f = r[res("factorize_fashion_mnist_unrounded")]
    out = ["| selection | conv method | MACs | factorized (no recovery) | recovered | host speed-up b1 | b64 |",
           "|---|---|---:|---:|---:|---:|---:|"]
    return lines(out, [f"| {x['selection']} | {x['conv_method']} | −{1 - x['macs_after'] / x['macs_before']:.1%} | "
                       f"{x['accuracy_factorized']:.2%} | {x['accuracy_recovered']:.2%} | {x['latency_speedup_b1']:.2f}× | "
                       f"{x['latency_speedup_b64']:.2f}× |" for x in f["rows"]])


def quantize_table(r: Mapping) -> str:
    """summarize's table, saying in the float-layers cell where the stage ships the float model."""
    q = r[res("quantize_fashion_mnist")]
    out = summarize.quantize_table(q)
    for i, x in enumerate(q["rows"], start=2):
        if x.get("stage_ships") == "float":
            out[i] = out[i].removesuffix(" |") + " (the stage ships float) |"
    return lines(out)


def quantize_findings(r: Mapping) -> str:
    q = r[res("quantize_fashion_mnist")]
    row = lambda n: find(q["rows"], "quantize_fashion_mnist.json", name=n)  # noqa: E731
    ok = [row(n) for n in ("teacher-tensorrt-ptq", "teacher-cpu-ptq", "student-tensorrt-ptq", "student-cpu-ptq")]
    fast, qat = row("tight-teacher-tensorrt-ptq"), row("tight-teacher-tensorrt-qat")
    tcpu, scpu = row("teacher-cpu-ptq"), row("student-cpu-ptq")
    trt = [x for x in q["rows"] if x.get("scheme") == "tensorrt" and "latency_ratio_b1" in x]
    trt_ratios = [v for x in trt for v in (x["latency_ratio_b1"], x["latency_ratio_b64"])]
    rounds = [v for pair in tcpu["latency_ratio_rounds"] for v in pair]
    plain, ac = row("outlier-teacher-cpu-ptq"), row("outlier-teacher-cpu-ptq+ac")
    reason = (ac.get("float_layer_reasons") or [{}])[0]
    return lines(
        f"* Both schemes stay within {max(x['drop_points'] for x in ok):.2f} points of float for teacher and student "
        f"(with NNCF's full bias correction; its default fast one costs the teacher {fast['drop_points']:.2f} points, row 5).",
        f"* The CPU scheme runs the teacher at **{tcpu['latency_ratio_b1']:.2f}× the float time at batch 1 and "
        f"{tcpu['latency_ratio_b64']:.2f}× at batch 64** (re-timed 2026-12-02 without ONNX Runtime's thread spinning, see "
        f"\"Reliability\"; rounds {spread(rounds[0::2], '.2f')}× and {spread(rounds[1::2], '.2f')}×). The first runs read "
        f"0.46× at both batches: the spinning threads of the session that had just run stole the next one's cores, so "
        f"those ratios were inflated. The student's layers (16 to 64 channels) are too small for int8 to pay: "
        f"{scpu['latency_ratio_b1']:.2f}× / {scpu['latency_ratio_b64']:.2f}×, so the quantize stage ships the float model "
        f"for CPU targets where int8 is not at least 1.1× faster at every batch (`stage_ships: {scpu.get('stage_ships')}` "
        f"in the row), and says why in the report.",
        f"* The TensorRT scheme is {spread(trt_ratios, '.1f')}× *slower* than float on ONNX Runtime here: ONNX Runtime on "
        f"x86 does not fuse signed-activation Q/DQ into its int8 kernels and runs the graph dequantized. That artifact is "
        f"for TensorRT; its host time says nothing about the Jetson, and the stage says so in the report.",
        f"* Tight budget ({fast['budget_points']:g} points): PTQ with fast bias correction "
        f"{'misses' if not fast['meets_budget'] else 'meets'} it (−{fast['drop_points']:.2f}). Accuracy control did "
        f"**not** rescue it: on its held-out *training* images the drop was within budget (a model loses less on images "
        f"it fits better), so it kept every layer int8 and the validation check refused the result. QAT with KD "
        f"(2 epochs, float model as teacher) {'met' if qat['meets_budget'] else 'missed'} it: −{qat['drop_points']:.2f}.",
        f"* Outlier channel (the teacher with one activation channel 1000× larger, same float function): plain PTQ "
        f"collapses to {plain['accuracy_int8']:.0%}; accuracy control ranks `{reason.get('layer', '?')}` (the layer "
        f"reading that channel) as costing {reason.get('regained_points', 0):.1f} points alone, keeps it float, and lands "
        f"at −{ac['drop_points']:.2f}. The float layer in the middle costs more than the speed-up: the mixed model is "
        f"{ac['latency_ratio_b1']:.2f}× / {ac['latency_ratio_b64']:.2f}× the float time (the extra quantize and dequantize "
        f"around it), so for this CPU target the stage ships {ac.get('stage_ships', 'float')}.")


def quantize_slow_layers(r: Mapping) -> str:
    q = r[res("quantize_slow_layers")]
    out = ["| model | layers kept float (slow in int8) | accuracy float / int8 / int8, slow layers float | "
           "int8 / float b1 | b64 | int8 (slow layers float) / float b1 | b64 |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for x in q["rows"]:
        a = x["accuracy"]
        out.append(f"| {x['model']} | {len(x['slow_layers'])} | {a['float']:.2%} / {a['int8']:.2%} / "
                   f"{a['int8_slow_float']:.2%} | {x['b1']['int8_over_float']:.2f}× | {x['b64']['int8_over_float']:.2f}× | "
                   f"{x['b1']['int8_slow_float_over_float']:.2f}× | {x['b64']['int8_slow_float_over_float']:.2f}× |")
    return lines(out)


# ---------------------------------------------------------------- latency estimators

def estimator_devices(r: Mapping) -> str:
    e = r[res("estimator_devices")]
    w = e["lomo_worst_row"]
    met = e["lomo_target_met"]
    devices = ", ".join(f"{name} {d['lomo_median_abs_error']:.0%} on {d['rows']} rows"
                        for name, d in sorted(e["per_device"].items()))
    method = "Nested leave-one-model-out" if e.get("variants") else "Leave-one-model-out"
    by_family = (f" by the median over rows (the median of the families' medians: {families_median(e):.1%})"
                 if met and e.get("per_family") else "")
    return lines(
        f"{method} median absolute error: **{e['lomo_median_abs_rel_error']:.1%} over {e['row_count']} rows, "
        f"{len(e['models'])} models ({', '.join(e['models'])}"
        + (f"; {len(e['per_family'])} families" if e.get("per_family") else "") + f"), {len(e['devices'])} devices** "
        f"({', '.join(e['devices'])}); the target was {e['lomo_target']:.0%}: "
        + (f"**met**{by_family}." if met else "**not met**.")
        + f" Per device (written into each profile): {devices}. Worst row: {w['model']} {w['precision']} batch "
        f"{w['batch']} on {w['device']}, published {w['published_ms']:.3f} ms, estimated {w['lomo_estimated_ms']:.3f} ms "
        f"({w['lomo_abs_rel_error']:.0%} off; {w['cited_as']}). With every row fitted: "
        f"{e['fit_median_abs_rel_error']:.1%} ({e['free_parameters']} free parameters).", "",
        estimator_forms(e),
        estimator_context(e),
        "| model | device | precision | batch | published ms | LOMO estimated ms | error | source |",
        "|---|---|---|---:|---:|---:|---:|---|",
        [f"| {x['model']} | {x['device']} | {x['precision']} | {x['batch']} | {x['published_ms']:.3f} | "
         f"{x['lomo_estimated_ms']:.3f} | {x['lomo_abs_rel_error']:.0%} | {x['cited_as']} |" for x in e["rows"]],
        [""] + [f"Revision: {x}" for x in e.get("revisions", [])] if e.get("revisions") else [])


def families_median(e: Mapping) -> float:
    """The median of the per-family held-out medians: each model family counted once, whatever its row count."""
    return statistics.median(f["lomo_median_abs_rel_error"] for f in e["per_family"].values())


def estimator_forms(e: Mapping) -> list[str]:
    """Which form of the fit each fold chose, and each form's own (selection-biased) held-out figure."""
    if not e.get("variants"):
        return []
    chosen = ", ".join(f"{name}: {fold['variant']}" for name, fold in e["lomo_folds"].items())
    alone = ", ".join(f"{name} {v['lomo_median_abs_rel_error']:.1%}" for name, v in e["variants"].items())
    return [f"The form of the fit is chosen inside the cross-validation: without each family, by leave-one-family-out "
            f"over the others ({chosen}); the profiles carry **{e['variant']}** ({e['fit_rule']}), fitted on all "
            f"rows. Each form's own leave-one-family-out, the figure the choice is made on and so optimistic for the "
            f"form it picks: {alone}.", ""]


def estimator_context(e: Mapping) -> list[str]:
    """Per family, the first look at rows added after a fit, and the spread between published runs."""
    out = []
    if e.get("per_family"):
        families = e["per_family"]
        out.append("Per model family (held out together): " + ", ".join(
            f"{name} {f['lomo_median_abs_rel_error']:.0%} on {f['rows']} rows" for name, f in families.items())
            + f"; the median of the families' medians, each family counted once: {families_median(e):.1%}.")
    for look in e.get("first_looks", []):
        out.append(f"First look at the {look['rows']} {look['batch']} rows, predicted by the calibration committed "
                   f"before they were added ({look['calibration_from']}): **{look['median_abs_rel_error']:.1%} "
                   f"median**, worst {look['max_abs_rel_error']:.0%}"
                   + (f"; the calibration it replaced ({look['compared_with']['calibration_from']}): "
                      f"{look['compared_with']['median_abs_rel_error']:.1%}, worst "
                      f"{look['compared_with']['max_abs_rel_error']:.0%}" if look.get("compared_with") else "") + "."
                   + (f" ({look['note'][0].upper()}{look['note'][1:]})" if look.get("note") else ""))
    if e.get("repeat_spread"):
        spread = e["repeat_spread"]
        out.append(f"Measurement floor: the same boards, models and precisions re-published in a later run differ by "
                   f"{spread['median_abs_rel_difference']:.1%} (median; worst {spread['max_abs_rel_difference']:.0%}, "
                   f"{spread['pairs']} pairs).")
    return [" ".join(out), ""] if out else []


def estimator_host(r: Mapping) -> str:
    e = r[res("estimator_host")]
    held = e["median_abs_rel_error_held_out"]
    note = (f"The held-out error, {held:.1%}, is {'within' if held <= 0.15 else 'above'} the 15% the issue asks for; "
            + ("the 224-px rows the script now also measures (`resnet18-imagenet`, `mobilenetv2-imagenet`, batch 1) "
               "have not been timed yet." if not e.get("rows_224px") else f"{len(e['rows_224px'])} 224-px rows are timed."))
    c = e["calibration"]
    table = summarize.estimator_table(e)
    table[0] = (f"Median absolute relative error: **{held:.1%} on the held-out 32×32 rows**, "
                f"{e['median_abs_rel_error_fit_rows']:.1%} on the 28×28 rows the calibration was fitted on (compute "
                f"efficiency {c['compute_efficiency']:g}, int8 {c['int8_compute_efficiency']:g}, int8 depthwise "
                f"{c['int8_grouped_efficiency']:g}, memory {c['memory_efficiency']:g}, {c['kernel_overhead_us']:g} µs per kernel).")
    return lines(note, "", table)


# ---------------------------------------------------------------- scale, search, GPU

def scale(r: Mapping) -> str:
    s = r[res("scale")]
    st, loop, c = s["streaming"], s["loop"], s["compress_224"]
    small, big = (st["epochs"][k] for k in sorted(st["epochs"], key=int))
    rss = lambda e: f"{e['peak_mb']:,.0f} MB ({e['main_peak_mb']:.0f} + 2 × {e['worker_peak_mb']:.0f})"  # noqa: E731
    ips = st["images_per_second"]
    cpu = loop["cpu"]
    gpu = loop.get("gpu")
    gpu_cell = ("not measured: no GPU here (`null`); see [GPU check](gpu-check.md)" if gpu is None else
                f"{gpu['edgekd_images_per_second']:.0f} vs {gpu['plain_images_per_second']:.0f} images/s: ratio "
                f"**{gpu['ratio']:.3f}**")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in c["stages"].items())
    return lines(
        "| measure | result |", "|---|---|",
        f"| peak RSS, one training epoch over {small['images']:,} streamed 224-px JPEGs (training process + 2 workers) "
        f"| {rss(small)} |",
        f"| the same over {big['images']:,} JPEGs | {rss(big)} |",
        f"| `rss_ratio` ({big['images']:,} / {small['images']:,}; must be ≤ 1.1) | **{st['rss_ratio']:.3f}** |",
        f"| decoding + random-resized-crop + flip + normalize, 224 px, 0 / 2 workers | {ips['workers_0']:.0f} / "
        f"{ips['workers_2']:.0f} images/s |",
        f"| `loop.cpu`: ResNet-18 at 224, edgekd's epoch vs a plain PyTorch loop ({cpu['batches']} batches of "
        f"{cpu['batch_size']}, {cpu['rounds']} alternating rounds) | {cpu['edgekd_images_per_second']:.2f} vs "
        f"{cpu['plain_images_per_second']:.2f} images/s: ratio **{cpu['ratio']:.3f}** (must be ≥ 0.95) |",
        f"| `loop.gpu` | {gpu_cell} |",
        f"| `compress_224`: MobileNetV2 at 224 for {c['target']}, {c['train_images']} streamed training images: teacher "
        f"(1 epoch) → 30% MAC pruning (1 recovery epoch) → int8 PTQ → export → benchmark | {c['wall_seconds']:.0f} s: "
        f"{stages}; {c['macs'] / 1e6:.0f} M MACs after pruning |")


def median_range(s: dict, fmt: str, scale_by: float = 1.0, unit: str = "") -> str:
    if not s or s.get("median") is None:
        return "–"
    med, lo, hi = (format(s[k] * scale_by, fmt) for k in ("median", "min", "max"))
    return f"{med}{unit} ({lo}–{hi})" if lo != hi else f"{med}{unit}"


def search(r: Mapping) -> str:
    s = r[res("search_fashion_mnist")]
    if "summary" not in s:
        ships = [f"on the {x['target']} target the default recipe itself ships the {x['default_recipe_ships']} student, and against "
                 f"that the pick is {x['speedup_vs_what_default_recipe_ships']:.2f}× faster "
                 f"({x['default_recipe_ships_ms_b64']:.3f} ms)" for x in s["rows"]
                 if x.get("speedup_vs_what_default_recipe_ships") is not None]
        drops = "; ".join(f"{x['target']} {gap(x['teacher_accuracy'], x['pick_accuracy'])}" for x in s["rows"])
        return lines(summarize.search_table(s), "",
                     "One run per target (no seeds): every figure above is one run, not a median. "
                     + (f"{'; '.join(ships).capitalize()}. " if ships else "")
                     + f"Points below the teacher after the final run: {drops}.")
    out = [f"Median (min–max) over each target's seeds; budget: at most {s.get('max_accuracy_drop_points', 1):g} "
           f"points below the teacher, batch {s.get('batch', 64)}.", "",
           "| target | runs (seeds) | teacher | default recipe: int8 student | pick accuracy | drop (points) | "
           "speed-up vs default | vs what the default recipe ships | all within budget | search (2 cores) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for target, t in s["summary"].items():
        rows = [x for x in s["rows"] if search_label(x) == target]
        seeds = ", ".join(map(str, t.get("seeds", [x["seed"] for x in rows])))
        teacher = spread([x["teacher_accuracy"] for x in rows], ".2%") if rows else "–"
        default = spread([x["default_accuracy"] for x in rows], ".2%") if rows else "–"
        out.append(f"| {target} | {t['runs']} ({seeds}) | {teacher} | {default} | "
                   f"{median_range(t['pick_accuracy'], '.2%')} | {median_range(t.get('drop_points'), '.2f')} | "
                   f"{median_range(t.get('speedup_vs_default'), '.2f', unit='×')} | "
                   f"{median_range(t.get('speedup_vs_what_default_recipe_ships'), '.2f', unit='×')} | "
                   f"{'yes' if t['all_within_budget'] else '**no**'} | "
                   f"{median_range(t.get('search_seconds'), '.0f', 1 / 60, ' min')} |")
    budget = s.get("max_accuracy_drop_points", 1)
    out += ["", "Each run (margin: points inside the budget on the selection split, against one standard error, "
            "flagged *at the edge* when inside it: the paired standard error of the drop where the search recorded it "
            "(*paired*), else the binomial one of the pick's accuracy, for runs that kept no per-image scores):", "",
            "| target | seed | pick | pick accuracy | drop (points) | selection margin (SE) | ms at b64: default / pick | "
            "speed-up | within budget | default recipe ships |", "|---|---:|---|---:|---:|---|---:|---:|---|---|"]
    out += [f"| {search_label(x)} | {x['seed']} | `{x['pick']}` | {x['pick_accuracy']:.2%} | {x['drop_points']:.2f} | "
            f"{selection_margin(x, budget)} | {x['default_ms_b64']:.3f} / {x['pick_ms_b64']:.3f} | "
            f"{x['speedup_vs_default']:.2f}× | {'yes' if x['within_budget'] else '**no**'} | "
            f"{x.get('default_recipe_ships', '–')} |" for x in s["rows"]]
    return lines(out)


def selection_margin(run: Mapping, budget: float) -> str:
    """How far inside the budget a run's pick sat on the selection split, and its binomial standard error there."""
    recorded = run.get("pick_margin") or {}
    if recorded.get("standard_error_points") is not None:
        se = recorded["standard_error_points"]
        return f"{recorded['points']:.2f} ({se:.2f} paired){': *at the edge*' if recorded['at_edge'] else ''}"
    if run.get("pick_selection_accuracy") is None:
        return "–"
    items = int(re.match(r"([\d,]+) items", run["splits"]["selection"])[1].replace(",", ""))
    p = run["pick_selection_accuracy"]
    margin = budget - round(100 * (run["teacher_selection_accuracy"] - p), 6)
    se = 100 * math.sqrt(p * (1 - p) / items)
    return f"{margin:.2f} ({se:.2f}){': *at the edge*' if margin < se else ''}"


def gpu_check(r: Mapping) -> str:
    g = r[res("gpu_check")]
    m = g["machine"]
    loop, comp, qat, tests = g["loop"]["gpu"], g["compress"], g["qat"], g["cuda_tests"]
    per_stage = "; ".join(f"{k} {v['seconds']:.0f} s, CUDA forwards {v['forwards'].get('cuda', 0):,}"
                          for k, v in comp["stages"].items())
    loss_ok = all(x == x and abs(x) != float("inf") for x in qat["losses"])
    out = [f"{m['gpu']} ({m['gpu_memory_gib']:.0f} GiB, CUDA {m['cuda']}, torch {m['torch']}, {m['cpu_cores']} CPU "
           f"cores), {g['seconds']:.0f} s in all{' (a CPU dry run)' if g.get('dry_run') else ''}.", "",
           "| part | status | result |", "|---|---|---|",
           f"| `loop.gpu`: {loop['model']} at 224, {loop['amp']} AMP, batch {loop['batch_size']}, edgekd's loop vs a plain "
           f"PyTorch loop | {loop['status']} | {loop['edgekd_images_per_second']:,.0f} vs "
           f"{loop['plain_images_per_second']:,.0f} images/s: ratio **{loop['ratio']:.2f}** |",
           f"| `compress`: {comp['model']} for {comp['target']}, {comp['train_images']} images, device cuda | "
           f"{comp['status']} | {comp['seconds']:.0f} s: {per_stage}; peak {comp['peak_gpu_memory_gib']:.1f} GiB |",
           f"| `qat`: {qat['model']}, {qat['amp']} AMP | {qat['status']} | {qat['quantizers']} quantizers, tensors on "
           f"{', '.join(qat['quantizer_tensors'])}; {len(qat['losses'])} steps, {qat['step_seconds'] * 1000:.0f} ms each; "
           f"losses {'finite' if loss_ok else '**not finite**'}, {qat['losses'][0]:g} → {qat['losses'][-1]:g} |",
           f"| `cuda_tests` | {tests['status']} | {cuda_tests_result(tests)} |", "",
           f"edgekd's training loop reached {loop['ratio']:.0%} of the plain loop's images/s on this GPU. The "
           f"`compress` run's accuracy ({comp['accuracy']:.0%}) is chance on {comp['train_images']} generated images "
           f"after one epoch: that part checks that the stages run on CUDA, not what they reach."]
    return lines(out)


def cuda_tests_result(tests: dict) -> str:
    if "passed" not in tests:
        return tests.get("reason", "")
    failed = f", failed: {', '.join(tests['failed_tests'])}" if tests.get("failed_tests") else ""
    return f"{tests['passed']} of {tests['tests']} passed ({', '.join(tests['files'])}){failed}"


def segmentation(r: Mapping) -> str:
    g = r[res("segmentation")]
    t, d, c = g["teacher"], g["distillation"], g["chain"]
    lat = g["latency"]
    miou = lambda x: f"{x * 100:.1f}"  # noqa: E731 (mIoU in points, as segmentation papers write it)
    alone, kd = d["alone"], d["outputs_kd"]
    seeds = ", ".join(str(s) for s in d["seeds"])
    rows = [("teacher", t["model"], t["params"], t["macs"], t["miou"]),
            ("distilled student (seed {})".format(c["seed"]), d["student"], c["distilled_student"]["params"],
             c["distilled_student"]["macs"], c["distilled_student"]["miou"]),
            (f"pruned {c['pruned']['reduction']:.0%}", d["student"], c["pruned"]["params"], c["pruned"]["macs"],
             c["pruned"]["miou"]),
            ("int8", d["student"], c["pruned"]["params"], c["pruned"]["macs"], c["int8"]["miou"])]
    keys = ("teacher", "student", "pruned", "int8")
    b64 = lat["batch_64"]
    int8_pace = f"{b64['int8']['speedup_vs_teacher'] / b64['pruned']['speedup_vs_teacher']:.2f}×"
    wins = sum(k > a for k, a in zip(kd["runs"], alone["runs"]))
    out = [f"{g['dataset']}; report split: {g['splits']['report']}; selection: {g['splits']['selection']}.", "",
           "| model | zoo name | params | MACs | mIoU | host ms, batch 1 | host ms, batch 64 | speed-up at 64 |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {name} | `{zoo}` | {params:,} | {macs / 1e6:.1f} M | {miou(value)} | {lat['batch_1'][key]['ms']:.3f} | "
            f"{lat['batch_64'][key]['ms']:.2f} | {lat['batch_64'][key]['speedup_vs_teacher']:.2f}× |"
            for (name, zoo, params, macs, value), key in zip(rows, keys)]
    out += ["", f"Distillation, seeds {seeds}: {d['student']} alone {miou(alone['mean'])} ± {alone['std'] * 100:.1f}, "
            f"distilled from the teacher on its outputs (`outputs`: KL per pixel) {miou(kd['mean'])} ± "
            f"{kd['std'] * 100:.1f} mIoU ({d['gain_points']:+.1f} points; every seed: alone "
            f"{', '.join(miou(x) for x in alone['runs'])}, distilled {', '.join(miou(x) for x in kd['runs'])}). "
            f"Distillation beat the student alone on {wins} of {len(kd['runs'])} seeds. int8 against the pruned "
            f"float model on the report split: {miou(c['pruned']['miou'])} → {miou(c['int8']['miou'])} mIoU "
            f"({gap(c['int8']['miou'], c['pruned']['miou'], 1)} points; the quantize stage's own check, on the selection "
            f"split: {-c['int8']['drop_points']:+.2f}), at {int8_pace} the float model's speed at batch 64. Latency "
            f"{lat['kind']}; speed-ups are medians of per-round ratios."]
    return lines(out)


# ---------------------------------------------------------------- the registry and the rewrite

def table(fn: Callable[[dict], list[str]], name: str) -> Callable[[Mapping], str]:
    return lambda r: lines(fn(r[res(name)]))


BLOCKS: dict[str, Callable[[Mapping], str]] = {
    "summary": summary,
    "intro-example": intro_example,
    "teacher": table(summarize.teacher_table, "teacher_fashion_mnist"),
    "distill": distill_main,
    "distill-findings": distill_findings,
    "distill-kd-sweep": distill_kd_sweep,
    "distill-kd-seeds": distill_kd_seeds,
    "distill-teacher-free": distill_teacher_free,
    "distill-long-budget": distill_long_budget,
    "distill-long-budget-findings": distill_long_budget_findings,
    "distill-lit-depth": distill_lit_depth,
    "distill-lit-findings": distill_lit_findings,
    "distill-full-data": distill_full_data,
    "prune": table(summarize.prune_table, "prune_fashion_mnist"),
    "prune-findings": prune_findings,
    "factorize": table(summarize.factorize_table, "factorize_fashion_mnist"),
    "factorize-findings": factorize_findings,
    "factorize-unrounded": factorize_unrounded,
    "quantize": quantize_table,
    "quantize-findings": quantize_findings,
    "quantize-slow-layers": quantize_slow_layers,
    "estimator-devices": estimator_devices,
    "estimator-host": estimator_host,
    "scale": scale,
    "search": search,
    "gpu-check": gpu_check,
    "segmentation": segmentation,
}


