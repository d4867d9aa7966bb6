"""Budget-driven search on Fashion-MNIST: the fastest model within 1 point of the teacher, against the default recipe.

For each target (``host``: latency measured here; ``jetson-orin``: estimated from the profile),
``edgekd.compress("cnn", data, weights=TEACHER, budget=Budget(max_accuracy_drop=1.0, batch=64))``
searches from the default teacher (weights in results/, 93.61%) and from the default recipe's
student distilled from it (``cnn-small``, the default recipe's distill stage, trained inside the
search and counted in ``search_seconds``). The default recipe's student (weights in
results/, trained by ``quantize_fashion_mnist.py``) goes through the default recipe's quantize stage
for the same target, so it ships what that recipe ships (int8, or float where int8 does not pay).
Both are scored with ONNX Runtime on the full test set; on the host they are timed side by side
(median of ``--repeats`` rounds of 200 runs at batch 64), for Jetson both are estimated.

Run: .venv/bin/python benchmarks/search_fashion_mnist.py [--targets host jetson-orin] [--repeats 3]
Writes benchmarks/results/search_fashion_mnist.json (each target's row merged in as it finishes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import onnx
from safetensors.torch import load_file

import edgekd
from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.estimate import estimate_latency
from edgekd.models.loading import build_model
from edgekd.onnx_export import export_onnx
from edgekd.runtime.onnxruntime import compare_latency, evaluate
from edgekd.stages.base import Handoff, ReportRow
from edgekd.stages.quantize import QuantizeStage
from edgekd.targets import load_target
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
DROP = 1.0


def trained(name: str, weights: Path, data):
    model = build_model(name, data.info)
    model.load_state_dict(load_file(weights))
    return model.eval()


def default_student(student, data, target: str, folder: Path) -> Path:
    """The ONNX file the default recipe ships for the student on ``target`` (its quantize stage decides)."""
    ctx = RunContext(out_dir=folder, target=load_target(target), data=data, cache_dir=folder / "cache",
                     progress=False, stage_dir=folder / "quantize")
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    out = QuantizeStage().apply(Handoff(model=student), ctx, ReportRow())
    if out.int8 is not None:
        return out.int8.path
    path = folder / "student-float.onnx"
    onnx.save(export_onnx(student, ctx.input_shape), str(path))
    return path


def run(target: str, data, folder: Path, repeats: int) -> dict:
    teacher = trained("cnn", RESULTS / "teacher_cnn_fashion_mnist.safetensors", data)
    student = trained("cnn-small", RESULTS / "student_cnn_small_fashion_mnist.safetensors", data)
    val = make_loader(data.val, data.info, batch_size=256, train=False)
    start = time.perf_counter()
    result = edgekd.compress("cnn", data, weights=str(RESULTS / "teacher_cnn_fashion_mnist.safetensors"),
                             target=target, out=folder / "run", progress=False,
                             budget=edgekd.Budget(max_accuracy_drop=DROP, batch=64))
    seconds = time.perf_counter() - start
    default = default_student(student, data, target, folder / "default")
    shape = (data.info.channels, *data.info.image_size)
    row = {"target": target, "teacher_accuracy": evaluate(export_onnx(teacher, shape).SerializeToString(), val),
           "default_accuracy": evaluate(default, val), "pick": result.report["search"]["pick"],
           "pick_accuracy": result.accuracy, "search_seconds": round(seconds, 1),
           "pick_recipe": (folder / "run" / "search" / "recipe.yaml").read_text(),
           "candidates": result.report["search"]["candidates"], "pareto": result.report["search"]["pareto"],
           "finalists": result.report["search"]["finalists"]}
    profile = load_target(target)
    if target == "host":
        rounds = [compare_latency([default, result.onnx_path], shape, 64, threads=profile.threads, runs=200)
                  for _ in range(repeats)]
        default_ms, pick_ms = (sorted(r[i].median_ms for r in rounds)[repeats // 2] for i in (0, 1))
        kind = f"measured side by side, median of {repeats} rounds"
    else:
        default_ms = estimate_latency(onnx.load(str(default)), profile, 64).ms
        pick_ms = estimate_latency(onnx.load(str(result.onnx_path)), profile, 64).ms
        kind = "estimated (calibrated roofline)"
    row.update(default_ms_b64=round(default_ms, 4), pick_ms_b64=round(pick_ms, 4),
               speedup_vs_default=round(default_ms / pick_ms, 3), latency=kind,
               within_budget=100 * (row["teacher_accuracy"] - row["pick_accuracy"]) <= DROP)
    print(json.dumps({k: v for k, v in row.items() if k not in ("candidates", "finalists", "pick_recipe")}),
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="*", default=["host", "jetson-orin"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = load_data(DataSpec(source="fashion-mnist"))
    path = RESULTS / "search_fashion_mnist.json"
    rows = {r["target"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    for target in args.targets:
        with tempfile.TemporaryDirectory(prefix=f"edgekd-search-{target}-") as tmp:
            rows[target] = run(target, data, Path(tmp), args.repeats)
        write_json(path, {"dataset": "fashion-mnist", "max_accuracy_drop_points": DROP, "batch": 64,
                          "host": load_target("host").description, "rows": list(rows.values()),
                          "versions": library_versions()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
