"""The run's report: ``report.json`` (for tools) and ``report.md`` (for people)."""

from __future__ import annotations

from pathlib import Path

from edgekd import __version__
from edgekd.atomic import write_json, write_text
from edgekd.report.markdown import render_markdown
from edgekd.versions import library_versions

SCHEMA_VERSION = 1


def build_report(recipe, ctx, records) -> dict:
    """Everything a reader needs: the target as used, how to feed the model, artifacts, one row per stage."""
    artifacts = {"report_json": "report.json", "report_md": "report.md", "manifest": "manifest.json"}
    if ctx.onnx_path is not None:
        artifacts["model_onnx"] = str(ctx.onnx_path.relative_to(ctx.out_dir))
        artifacts["deploy"] = "deploy/"
    final = records[-1]
    return {
        "schema_version": SCHEMA_VERSION,
        "edgekd_version": __version__,
        "recipe": {"name": recipe.name, "description": recipe.description},
        "target": ctx.target.model_dump(mode="json"),
        "data": {"name": ctx.data.info.name, "train_images": len(ctx.data.train), "val_images": len(ctx.data.val),
                 "num_classes": ctx.data.info.num_classes},
        "preprocessing": ctx.data.info.preprocessing(),
        "artifacts": artifacts,
        "stages": [r.to_dict() for r in records],
        "summary": {"accuracy": final.accuracy, "accuracy_source": final.accuracy_source,
                    "params": final.params, "macs": final.macs, "size_bytes": final.size_bytes},
        "versions": library_versions(),
    }


def write_report(out_dir: Path, report: dict) -> None:
    write_json(out_dir / "report.json", report)
    write_text(out_dir / "report.md", render_markdown(report))
