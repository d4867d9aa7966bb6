"""Print the README's results tables (Markdown) from benchmarks/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def teacher_table(r: dict) -> list[str]:
    lines = ["| model | params | MACs | epochs | test accuracy (PyTorch / ONNX Runtime) | train time (2 cores) |",
             "|---|---:|---:|---:|---:|---:|",
             f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | {r['epochs']} | "
             f"{r['accuracy']:.2%} / {r['onnxruntime_accuracy']:.2%} | {r['train_seconds'] / 60:.1f} min |", "",
             "| batch | PyTorch eager | ONNX Runtime fp32 | ratio |", "|---:|---:|---:|---:|"]
    lines += [f"| {x['batch']} | {x['pytorch_ms']:.3f} ms | {x['onnxruntime_ms']:.3f} ms | {x['onnxruntime_over_pytorch']:.2f}× |"
              for x in r["latency"]]
    if r.get("timing_note"):
        lines += ["", f"Trained on the train split {r['timing_note']}; its latencies were timed then too."]
    return lines


def method_label(row: dict, epochs: int, seeds: int) -> str:
    """The method, with its total epochs when it trains longer than the others (born-again generations)
    and its number of seeds when it has fewer than the others."""
    notes = []
    if row.get("total_epochs", epochs) != epochs:
        notes.append(f"{row['total_epochs']} epochs in all")
    if len(row["seeds"]) != seeds:
        notes.append(f"{len(row['seeds'])} seed{'s' * (len(row['seeds']) > 1)}")
    return f"{row['method']} ({', '.join(notes)})" if notes else row["method"]


def distill_table(r: dict) -> list[str]:
    return distill_main_table(r) + full_data_lines(r) + kd_cost_lines(r) + long_budget_table(r) + lit_depth_table(r)


def distill_main_table(r: dict) -> list[str]:
    """The comparison's header sentence and its table, one row per method (the README's main table)."""
    t = r["teacher"]
    seeds = len(r["rows"][0]["seeds"])
    lines = [f"Teacher {t['model']} ({t['params']:,} params, {t['accuracy']:.2%}); every row: "
             f"{r['epochs']} epochs on {r['train_images']:,} training images, no augmentation, "
             f"{seeds} seeds, accuracy on the {r['val_images']:,}-image test set.", "",
             "| method | student | params | accuracy (mean ± std) | s/epoch |", "|---|---|---:|---:|---:|"]
    return lines + [f"| {method_label(x, r['epochs'], seeds)} | {x['student']} | {x['params']:,} | {x['accuracy_mean']:.2%} ± "
                    f"{x['accuracy_std']:.2%} | {x['epoch_seconds']:.1f} |" for x in r["rows"]]


def full_data_lines(r: dict) -> list[str]:
    """The full-data rows, in the main table's format (no header)."""
    return [f"| {x['method']} (all {x['train_images']:,} images, {x['epochs']} epochs) | {x['student']} | "
            f"{x['params']:,} | {x['accuracy_mean']:.2%} ± {x['accuracy_std']:.2%} | {x['epoch_seconds']:.1f} |"
            for x in r.get("full_data_rows", [])]


def kd_cost_lines(r: dict) -> list[str]:
    return ["", f"KD epoch / student-alone epoch, measured alternately in one run: "
                f"**{r['kd_epoch_cost_ratio']:.2f}×** with cached teacher logits "
                f"({r['kd_live_teacher_cost_ratio']:.2f}× with the teacher run live)."]


def accuracy_cells(x: dict) -> str:
    return f"{x['accuracy_mean']:.2%} ± {x['accuracy_std']:.2%} | {', '.join(f'{a:.2%}' for a in x['accuracies'])}"


def long_budget_table(r: dict) -> list[str]:
    rows = r.get("long_budget_rows", [])
    if not rows:
        return []
    x = rows[0]
    lines = ["", f"The teacher-free and online methods on a longer budget: {x['epochs']} epochs on "
                 f"{x['train_images']:,} images, {x['student']}, {len(x['seeds'])} seeds:", "",
             "| method | accuracy (mean ± std) | per seed | s/epoch |", "|---|---:|---|---:|"]
    return lines + [f"| {x['method']} | {accuracy_cells(x)} | {x['epoch_seconds']:.1f} |" for x in rows]


def lit_depth_table(r: dict) -> list[str]:
    study = r.get("lit_depth")
    if not study:
        return []
    t = study["teacher"]
    lines = ["", f"LIT's depth study: teacher {t['model']} ({t['params']:,} params, {t['epochs']} epochs, "
                 f"{t['accuracy']:.2%}); students {study['epochs']} epochs on {study['train_images']:,} images:", "",
             "| method | student | params | accuracy (mean ± std) | per seed | s/epoch |", "|---|---|---:|---:|---|---:|"]
    return lines + [f"| {x['method']} | {x['student']} | {x['params']:,} | {accuracy_cells(x)} | "
                    f"{x['epoch_seconds']:.1f} |" for x in study["rows"]]


def prune_table(r: dict) -> list[str]:
    lines = ["| model | importance / scope | round to | MACs before → after | params before → after | accuracy before "
             "| pruned | recovered (epochs) | ONNX accuracy | host speed-up b1 | b64 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["rows"]:
        lines.append(f"| {x['model']} ({x['train_images']:,} images) | {x['importance']} / {x['scope']} | {x['round_to']} | "
                     f"{x['macs_before'] / 1e6:.1f} M → {x['macs_after'] / 1e6:.1f} M "
                     f"(−{1 - x['macs_after'] / x['macs_before']:.1%}) | {x['params_before']:,} → {x['params_after']:,} | "
                     f"{x['accuracy_before']:.2%} | {x['accuracy_pruned']:.2%} | {x['accuracy_recovered']:.2%} "
                     f"({x['recovery_epochs']}) | {x['onnx_accuracy']:.2%} | {x['latency_speedup_b1']:.2f}× | "
                     f"{x['latency_speedup_b64']:.2f}× |")
    return lines


def factorize_table(r: dict) -> list[str]:
    errors = ", ".join(f"{k} {v:.1e}" for k, v in r["full_rank_max_rel_error"].items())
    lines = [f"Full rank, largest relative output error over the teacher's layers on real test images: {errors}.", "",
             "| selection | conv method | MACs before → after | accuracy before | factorized (no recovery) | "
             "recovered (epochs) | ONNX accuracy | host speed-up b1 | b64 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["rows"]:
        lines.append(f"| {x['selection']} | {x['conv_method']} | {x['macs_before'] / 1e6:.1f} M → "
                     f"{x['macs_after'] / 1e6:.1f} M (−{1 - x['macs_after'] / x['macs_before']:.1%}) | "
                     f"{x['accuracy_before']:.2%} | {x['accuracy_factorized']:.2%} | {x['accuracy_recovered']:.2%} "
                     f"({x['recovery_epochs']}) | {x['onnx_accuracy']:.2%} | {x['latency_speedup_b1']:.2f}× | "
                     f"{x['latency_speedup_b64']:.2f}× |")
    return lines


def quantize_table(r: dict) -> list[str]:
    lines = ["| model | scheme | method | budget | float | int8 | drop (points) | int8/float latency b1 | b64 | "
             "float layers |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for x in r["rows"]:
        if "error" in x:
            lines.append(f"| {x['model']} | {x['scheme']} | {x['name']} | | | | refused: {x['error']} | | | |")
            continue
        method = x["method"] + (" (fast bias corr.)" if x["bias_correction"] == "fast" else "")
        verdict = "" if x["meets_budget"] else " (misses)"
        lines.append(f"| {x['model']} | {x['scheme']} | {method} | {x['budget_points']:g} | {x['accuracy_float']:.2%} | "
                     f"{x['accuracy_int8']:.2%} | {x['drop_points']:.2f}{verdict} | {x['latency_ratio_b1']:.2f}× | "
                     f"{x['latency_ratio_b64']:.2f}× | {', '.join(x['float_layers']) or '–'} |")
    return lines


def estimator_table(r: dict) -> list[str]:
    c = r["calibration"]
    lines = [f"Median absolute relative error: **{r['median_abs_rel_error_held_out']:.1%} on the held-out 32×32 rows**, "
             f"{r['median_abs_rel_error_fit_rows']:.1%} on the 28×28 rows the calibration was fitted on "
             f"(compute efficiency {c['compute_efficiency']:g}, int8 {c['int8_compute_efficiency']:g}, memory "
             f"{c['memory_efficiency']:g}, {c['node_overhead_us']:g} µs per node).", "",
             "| model | input | precision | b1 measured / estimated | error | b64 measured / estimated | error |",
             "|---|---|---|---:|---:|---:|---:|"]
    rows = {}
    for x in r["rows"]:
        rows.setdefault((x["model"], "×".join(map(str, x["input_shape"])), x["precision"]), {})[x["batch"]] = x
    for (model, shape, precision), by_batch in rows.items():
        cells = [f"{b['measured_ms']:.3f} / {b['estimated_ms']:.3f} ms | {b['abs_rel_error']:.0%}"
                 for b in (by_batch[1], by_batch[64])]
        lines.append(f"| {model} | {shape} | {precision} | {cells[0]} | {cells[1]} |")
    return lines


def search_table(r: dict) -> list[str]:
    lines = ["| target | teacher | default recipe (int8 student) | budget pick | pick accuracy | ms at b64: default / pick "
             "| speed-up | latency | search |", "|---|---:|---:|---|---:|---:|---:|---|---:|"]
    lines += [f"| {x['target']} | {x['teacher_accuracy']:.2%} | {x['default_accuracy']:.2%} | {x['pick']} | "
              f"{x['pick_accuracy']:.2%} | {x['default_ms_b64']:.3f} / {x['pick_ms_b64']:.3f} | "
              f"{x['speedup_vs_default']:.2f}× | {x['latency']} | {x['search_seconds'] / 60:.0f} min |"
              for x in r["rows"]]
    return lines


def main() -> None:
    for name, table in (("teacher_fashion_mnist.json", teacher_table), ("distill_fashion_mnist.json", distill_table),
                        ("prune_fashion_mnist.json", prune_table),
                        ("factorize_fashion_mnist.json", factorize_table),
                        ("quantize_fashion_mnist.json", quantize_table),
                        ("estimator_host.json", estimator_table), ("search_fashion_mnist.json", search_table)):
        path = RESULTS / name
        if path.exists():
            print(f"**{name}**\n")
            print("\n".join(table(json.loads(path.read_text()))), end="\n\n")


if __name__ == "__main__":
    main()
