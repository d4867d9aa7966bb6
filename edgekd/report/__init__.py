"""The run's report: ``report.json`` (for tools), ``report.md`` and ``report.html`` (for people).

Also: merging latency records measured on the device (``edgekd bench``) into a finished run,
and comparing runs side by side (``edgekd report RUN [RUN...]``).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd import __version__
from edgekd.atomic import write_json, write_text
from edgekd.errors import OutputError
from edgekd.report.figures import label, value
from edgekd.report.html import render_html
from edgekd.report.markdown import human_bytes, render_markdown
from edgekd.versions import library_versions

SCHEMA_VERSION = 1
SPLIT_USES = {"train": "fits weights",
              "selection": "scores every choice (accuracy control, fallbacks, checks, finalists)",
              "report": "grades every stage's result once, after every choice: the {metric} column"}


def build_report(recipe, ctx, records, *, onnx_path: Path | None = None) -> dict:
    """Everything a reader needs: the target as used, how to feed the model, artifacts, one row per stage."""
    artifacts = {"report_json": "report.json", "report_md": "report.md", "report_html": "report.html",
                 "manifest": "manifest.json"}
    if onnx_path is not None:
        artifacts["model_onnx"] = str(onnx_path.relative_to(ctx.out_dir))
        artifacts["deploy"] = "deploy/"
    final = records[-1]
    return {
        "schema_version": SCHEMA_VERSION,
        "edgekd_version": __version__,
        "recipe": {"name": recipe.name, "description": recipe.description},
        "target": ctx.target.model_dump(mode="json"),
        "data": {"name": ctx.data.info.name, "num_classes": ctx.data.info.num_classes, "splits": {
            role: {"items": len(getattr(ctx.data, role)), "from": ctx.data.splits.get(role, role),
                   "use": use.format(metric=ctx.metric.label)}
            for role, use in SPLIT_USES.items()}},
        "preprocessing": ctx.data.info.preprocessing(),
        "artifacts": artifacts,
        "metric": ctx.metric.describe(),
        "stages": [r.to_dict() for r in records],
        "summary": {"accuracy": final.accuracy, "accuracy_source": final.accuracy_source, "accuracy_split": "report",
                    "selection_accuracy": final.selection_accuracy,
                    "params": final.params, "macs": final.macs, "size_bytes": final.size_bytes,
                    **shipped_precision(records)},
        "versions": library_versions(),
    }


def shipped_precision(records) -> dict:
    """What ``model.onnx`` is (int8 or float) and, when a quantize stage chose float, why."""
    shipped = {}
    for record in records:
        if "precision" in record.details:
            shipped["precision"] = record.details["precision"]
        if record.details.get("why_float"):
            shipped["why_float"] = record.details["why_float"]
    return shipped


def write_report(out_dir: Path, report: dict) -> None:
    write_json(out_dir / "report.json", report)
    write_text(out_dir / "report.md", render_markdown(report))
    write_text(out_dir / "report.html", render_html(report))


def read_report(run_dir: Path) -> dict:
    """A finished run's report, checked against the schema (one clear error if it is not one)."""
    from pydantic import ValidationError

    from edgekd.report.schema import Report

    path = Path(run_dir) / "report.json"
    try:
        report = json.loads(path.read_text())
        Report.model_validate(report)
    except (OSError, ValueError) as exc:
        why = f"{exc.error_count()} schema errors, first: {exc.errors()[0]['msg']}" if isinstance(
            exc, ValidationError) else type(exc).__name__
        raise OutputError(f"{path} is missing, unreadable or not an edgekd report ({why}); give a run folder "
                          "that `edgekd compress` finished") from None
    return report


def merge_measurements(run_dir: Path, bench_file: Path) -> int:
    """Add the measured records of ``edgekd bench --out FILE`` to the run's last stage; rewrite the reports."""
    report = read_report(run_dir)
    try:
        records = json.loads(Path(bench_file).read_text())["latency"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{bench_file} is not an `edgekd bench` record file ({type(exc).__name__})") from None
    stage = report["stages"][-1]
    known = {(r["device"], r["batch"], r["kind"], r["ms"]) for r in stage["latency"]}
    new = [r for r in records
           if r.get("kind") == "measured" and (r["device"], r["batch"], r["kind"], r["ms"]) not in known]
    stage["latency"] += new
    write_report(Path(run_dir), report)
    return len(new)


def compare_runs(run_dirs: list[Path]) -> str:
    """A markdown table of several runs side by side: target, recipe, final size, metric, latency."""
    reports = [read_report(run_dir) for run_dir in run_dirs]
    names = sorted({label(report) for report in reports})
    lines = [f"| run | target | recipe | params | size | {' / '.join(names)} (report split) | latency (batch: ms, kind) |",
             "|---|---|---|---:|---:|---:|---|"]
    for run_dir, report in zip(run_dirs, reports):
        summary = report["summary"]
        latency = "; ".join(f"{r['device']} b{r['batch']}: {r['ms']:.3f} ({r['kind']})"
                            for s in report["stages"] for r in s["latency"] if r["ms"] is not None)
        lines.append(f"| {run_dir} | {report['target']['name']} | {report['recipe']['name']} | "
                     f"{summary['params']:,} | {human_bytes(summary['size_bytes'])} | "
                     f"{value(report, summary['accuracy'])} ({summary['accuracy_source']}) | {latency or '–'} |")
    return "\n".join(lines) + "\n"
