"""``report.md``: the run at a glance, with measured and not-measured latency kept apart."""

from __future__ import annotations

from edgekd.records import describe_uncertainty
from edgekd.report.figures import heading, label, value
from edgekd.report.search import search_markdown


def render_markdown(report: dict) -> str:
    target = report["target"]
    lines = [f"# edgekd report: {report['recipe']['name']} → {target['name']}", "",
             f"Target: **{target['name']}**: {target['description']} "
             f"(runtime {target['runtime']}, precision {target['precision']})", "",
             f"Data: {report['data']['name']}.", ""] + split_lines(report["data"]["splits"]) + [""]
    summary = report["summary"]
    if summary.get("precision"):
        lines += [f"Shipped: **{summary['precision']}** `model.onnx`"
                  + (f" ({summary['why_float']})" if summary.get("why_float") else "") + ".", ""]
    lines += ["## Stages", "",
              f"| stage | params | MACs | size | {label(report)} (report split) | measured with | selection split | "
              "time |",
              "|---|---:|---:|---:|---:|---|---:|---:|"]
    for s in report["stages"]:
        acc, chosen = (value(report, v) for v in (s["accuracy"], s.get("selection_accuracy")))
        lines.append(f"| {s['name']} | {s['params']:,} | {s['macs']:,} | {human_bytes(s['size_bytes'])} | {acc} | "
                     f"{s['accuracy_source']} | {chosen} | {s['seconds']:.1f} s |")
    lines += step_tables(report) + layer_tables(report) + int8_tables(report) + notes(report)
    if report.get("search"):
        lines += search_markdown(report["search"], label(report))
    lines += ["", "## Latency", ""] + latency_table(report) + ["", "## Preprocessing", ""]
    pre = report["preprocessing"]
    how = (f"{pre['formula']}, scale {pre['scale']:.6g}, mean {pre['mean']}, std {pre['std']}"
           if pre.get("known", True) else f"unknown: {pre['note']}")
    lines += [f"Input `{pre['input_shape']}` ({pre['layout']}, {pre['dtype']}): {how}.", "", "## Artifacts", ""]
    lines += [f"- `{path}`" for path in report["artifacts"].values()]
    return "\n".join(lines) + "\n"


def split_lines(splits: dict) -> list[str]:
    """One bullet per data role: how many items, where from, what it is used for."""
    return [f"- **{role}**: {split['from']}; {split['use']}" for role, split in splits.items()]


def step_tables(report: dict) -> list[str]:
    """Stages that work in steps (pruning rounds, 2:4 masking) get a row per step."""
    out = []
    for s in report["stages"]:
        steps = s["details"].get("steps")
        if not steps:
            continue
        out += ["", f"### {s['name']}: steps", "",
                f"| step | kind | params | MACs | size | {label(report)} before recovery | after recovery | "
                "host speed-up b1 / b64 |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for row in steps:
            speedups = " / ".join(f"{c['speedup']:.2f}×" for c in row.get("host_latency", [])) or "–"
            out.append(f"| {row['step']} | {row['kind']} | {row['params']:,} | {row['macs']:,} | "
                       f"{human_bytes(row['size_bytes'])} | {value(report, row['accuracy_pruned'])} | "
                       f"{value(report, row['accuracy_recovered'])} | {speedups} |")
        out += ["", "Host speed-ups are ONNX Runtime on this machine, the stage's input and output models timed "
                "side by side."]
    return out


def layer_tables(report: dict) -> list[str]:
    """Stages that decide per layer (factorization) list every layer and what was done to it."""
    out = []
    for s in report["stages"]:
        layers = s["details"].get("layers")
        if not layers:
            continue
        out += ["", f"### {s['name']}: layers", "",
                f"| layer | method | rank | MACs before → after | {label(report)} effect alone | note |",
                "|---|---|---:|---:|---:|---|"]
        for x in layers:
            effect = value(report, x["accuracy_effect"], signed=True)
            out.append(f"| {x['layer']} | {x['method']} | {x['rank'] if x['rank'] is not None else '–'} | "
                       f"{x['macs_before']:,} → {x['macs_after']:,} | {effect} | {x['skipped'] or ''} |")
    return out


def int8_tables(report: dict) -> list[str]:
    """The quantize stage: scheme, method, float vs int8 metric and host speed, and the layers kept float."""
    out = []
    for s in report["stages"]:
        d = s["details"]
        if "scheme" not in d:
            continue
        speedups = " / ".join(f"{c['speedup']:.2f}× at batch {c['batch']}" for c in d.get("host_latency", []))
        out += ["", f"### {s['name']}: int8", "",
                f"Scheme **{d['scheme']}**, method **{d['method']}**, calibrated on {d['calibration_images']} training "
                f"images. {heading(report)} (ONNX Runtime, validation set): float "
                f"{value(report, d['accuracy_float'])} → int8 "
                f"{value(report, d['accuracy_int8'])} ({-d['drop_points']:+.2f} points; budget: lose at most "
                f"{d['max_accuracy_drop_points']:g})."
                f" Host speed-up int8 vs float, side by side: {speedups or '–'}."]
        if d.get("float_layers"):
            out += ["", "| layer kept float | why |", "|---|---|"]
            out += [f"| {x['layer']} | {x['why']} |" for x in d["float_layers"]]
    return out


def notes(report: dict) -> list[str]:
    found = [(s["name"], n) for s in report["stages"] for n in s["details"].get("notes", [])]
    if not found:
        return []
    return ["", "## Notes", ""] + [f"- **{name}**: {note}" for name, note in found]


def latency_table(report: dict) -> list[str]:
    rows = [(s["name"], r) for s in report["stages"] for r in s["latency"]]
    if not rows:
        return ["No latency was measured in this run (add a benchmark stage)."]
    out = ["| stage | device | runtime | batch | median ms | p90 ms | p99 ms | kind |",
           "|---|---|---|---:|---:|---:|---:|---|"]
    for name, r in rows:
        if r["ms"] is None:
            out.append(f"| {name} | {r['device']} | {r['runtime']} | {r['batch']} | – | – | – | "
                       f"**{r['kind']}**: {r['note']} |")
        elif r["kind"] == "estimated":
            out.append(f"| {name} | {r['device']} | {r['runtime']} | {r['batch']} | *{r['ms']:.3f}* | – | – | "
                       f"**estimated, {uncertainty(r)}**: {r['note']} |")
        else:
            out.append(f"| {name} | {r['device']} | {r['runtime']} | {r['batch']} | {r['ms']:.3f} | "
                       f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['kind']} |")
    if any(r["kind"] != "measured" for _, r in rows):
        out += ["", "Host figures describe the machine this ran on, not the target device; estimates are a roofline "
                "from the target profile (edgekd/estimate.py), not measurements; each says how far off the profile's "
                "estimates were on published measurements they were not fitted on, or that none has checked them."]
    return out


def uncertainty(r: dict) -> str:
    """An estimate's validated error (reports written before it existed say unvalidated)."""
    return describe_uncertainty(r["kind"], r.get("uncertainty_pct"), r.get("held_out_measurements", 0),
                                r.get("outside_validated_range", ""))


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
