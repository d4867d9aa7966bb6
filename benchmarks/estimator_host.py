"""How good is the roofline latency estimate? Estimate vs ONNX Runtime measurement on this host.

Zoo models at two input sizes (28×28 grey, 32×32 colour), float and int8 (the host's CPU scheme,
NNCF PTQ calibrated on random images: latency does not depend on the weights), batch 1 and 64,
plus two ImageNet-shape models at 224×224 (batch 1). The estimator's efficiencies and overheads
are fitted (grid search, median absolute relative error) on the 28×28 rows only; the 32×32 and
224×224 rows are held out and their error is the claim.

Run: .venv/bin/python benchmarks/estimator_host.py [--reuse]
Writes benchmarks/results/estimator_host.json. ``--reuse`` keeps the committed measurements and
refits only (for a changed estimator on a busy machine).
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

import onnx
import torch
from torch.utils.data import DataLoader, TensorDataset

from edgekd.atomic import write_json
from edgekd.estimate import kernel_costs, roofline
from edgekd.models import create_model
from edgekd.onnx_export import export_onnx
from edgekd.quantize.ptq import quantize_onnx
from edgekd.quantize.scheme import Scheme
from edgekd.runtime.onnxruntime import measure_latency
from edgekd.targets import Calibration, load_target
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
MODELS = ("cnn-tiny", "cnn-small", "cnn", "resnet20", "mobilenetv2-0.5")
SHAPES = {"fit": (1, 28, 28), "held-out": (3, 32, 32)}
BATCHES = (1, 64)
IMAGENET = ("resnet18-imagenet", "mobilenetv2-imagenet")  # 224×224, batch 1 only (batch 64 takes minutes here)
GRID = {"compute_efficiency": (0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5),
        "int8_compute_efficiency": (0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8),
        "int8_grouped_efficiency": (0.01, 0.02, 0.05, 0.1, 0.2),
        "memory_efficiency": (0.25, 0.5, 1.0),
        "kernel_overhead_us": (0.5, 1.0, 2.0, 3.0, 5.0, 10.0)}


def models_for(shape: tuple[int, int, int], names: tuple[str, ...] = MODELS):
    """(name, precision, ONNX model) for every zoo model at ``shape``, float and int8."""
    count = 256 if shape[1] < 100 else 16
    images = torch.randn(count, *shape)
    calibration = DataLoader(TensorDataset(images, torch.zeros(count, dtype=torch.long)), batch_size=min(32, count))
    for name in names:
        model = create_model(name, in_channels=shape[0], num_classes=10, input_size=shape[1:]).eval()
        float_model = export_onnx(model, shape)
        yield name, "fp32", float_model
        yield name, "int8", quantize_onnx(float_model, calibration, Scheme.CPU).model


def measure_rows(workdir: Path, threads: int) -> list[dict]:
    rows = []
    plan = [(split, shape, MODELS, BATCHES) for split, shape in SHAPES.items()]
    plan.append(("held-out", (3, 224, 224), IMAGENET, (1,)))
    for split, shape, names, batches in plan:
        for name, precision, model in models_for(shape, names):
            path = workdir / f"{name}-{precision}-{shape[1]}.onnx"
            onnx.save(model, str(path))
            for batch in batches:
                measured = measure_latency(path, shape, batch, threads=threads, runs=200).median_ms
                rows.append({"model": name, "input_shape": list(shape), "precision": precision, "batch": batch,
                             "split": split, "measured_ms": round(measured, 4), "_path": path})
                print(rows[-1]["model"], shape, precision, batch, f"{measured:.3f} ms", flush=True)
    return rows


def median_error(rows: list[dict], target, calibration: Calibration) -> float:
    return statistics.median(abs(estimate(r, target, calibration) / r["measured_ms"] - 1) for r in rows)


def estimate(row: dict, target, calibration: Calibration) -> float:
    if "_costs" not in row:  # the graph's node costs do not depend on the calibration: computed once
        row["_costs"] = kernel_costs(onnx.load(str(row["_path"])), target, row["batch"])
    return roofline(row["_costs"], target, row["batch"], calibration).ms


def fit(rows: list[dict], target) -> Calibration:
    best, best_error = None, float("inf")
    for values in itertools.product(*GRID.values()):
        calibration = Calibration(**dict(zip(GRID, values)))
        error = median_error(rows, target, calibration)
        if error < best_error:
            best, best_error = calibration, error
    return best


def reuse_rows(workdir: Path) -> list[dict]:
    """The committed measurements, with their models rebuilt: refits the estimator without re-timing.

    For a changed estimator on a machine that is busy (timings on loaded cores are not the host's).
    """
    measured = {(r["model"], tuple(r["input_shape"]), r["precision"], r["batch"]): r
                for r in json.loads((RESULTS / "estimator_host.json").read_text())["rows"]}
    rows = []
    for split, shape in SHAPES.items():
        for name, precision, model in models_for(shape):
            path = workdir / f"{name}-{precision}-{shape[1]}.onnx"
            onnx.save(model, str(path))
            for batch in BATCHES:
                old = measured[name, shape, precision, batch]
                rows.append({**{k: old[k] for k in ("model", "input_shape", "precision", "batch", "split",
                                                    "measured_ms")}, "_path": path})
    return rows


def main() -> int:
    target = load_target("host")
    with tempfile.TemporaryDirectory(prefix="edgekd-estimator-") as tmp:
        rows = reuse_rows(Path(tmp)) if "--reuse" in sys.argv else measure_rows(Path(tmp), target.threads)
        fitted = fit([r for r in rows if r["split"] == "fit"], target)
        for r in rows:
            r["estimated_ms"] = round(estimate(r, target, fitted), 4)
            r["abs_rel_error"] = round(abs(r["estimated_ms"] / r["measured_ms"] - 1), 3)
    held_out = [r["abs_rel_error"] for r in rows if r["split"] == "held-out"]
    in_sample = [r["abs_rel_error"] for r in rows if r["split"] == "fit"]
    result = {"host": target.description, "target_peak": target.peak.model_dump(),
              "memory_bandwidth_gbs": target.memory_bandwidth_gbs, "threads": target.threads,
              "calibration": {**fitted.model_dump(exclude={"validation"}),
                              "node_overhead_us": fitted.kernel_overhead_us},  # the name summarize.py reads
              "fitted_on": "the 28x28 rows (grid search, median abs rel error)",
              "median_abs_rel_error": statistics.median(held_out),
              "median_abs_rel_error_held_out": statistics.median(held_out),
              "median_abs_rel_error_fit_rows": statistics.median(in_sample),
              "median_abs_rel_error_all": statistics.median(held_out + in_sample),

              # 224-px rows apart: they have batch 1 only (the rows' table pairs batch 1 with 64)
              "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows if r["input_shape"][1] < 224],
              "rows_224px": [{k: v for k, v in r.items() if not k.startswith("_")}
                             for r in rows if r["input_shape"][1] == 224],
              "versions": library_versions()}
    imagenet = [r["abs_rel_error"] for r in rows if r["input_shape"][1] == 224]
    if imagenet:
        result["median_abs_rel_error_224px"] = statistics.median(imagenet)
    write_json(RESULTS / "estimator_host.json", result)
    print(f"fitted {fitted}; median abs rel error: held out {result['median_abs_rel_error_held_out']:.1%}, "
          f"fit rows {result['median_abs_rel_error_fit_rows']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
