"""How good is the roofline latency estimate? Estimate vs ONNX Runtime measurement on this host.

Zoo models at two input sizes (28×28 grey, 32×32 colour), float and int8 (the host's CPU scheme,
NNCF PTQ calibrated on random images: latency does not depend on the weights), batch 1 and 64.
The estimator's efficiencies and per-node overhead are fitted (grid search, median absolute
relative error) on the 28×28 rows only; the 32×32 rows are held out and their error is the claim.

Run: .venv/bin/python benchmarks/estimator_host.py
Writes benchmarks/results/estimator_host.json.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
from pathlib import Path

import onnx
import torch
from torch.utils.data import DataLoader, TensorDataset

from edgekd.atomic import write_json
from edgekd.estimate import node_costs, roofline
from edgekd.models import create_model
from edgekd.quantize.ptq import quantize_onnx
from edgekd.quantize.scheme import Scheme
from edgekd.runtime.onnxruntime import measure_latency
from edgekd.stages.quantize import export_float
from edgekd.targets import Calibration, load_target
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
MODELS = ("cnn-tiny", "cnn-small", "cnn", "resnet20", "mobilenetv2-0.5")
SHAPES = {"fit": (1, 28, 28), "held-out": (3, 32, 32)}
BATCHES = (1, 64)
GRID = {"compute_efficiency": (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5),
        "int8_compute_efficiency": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8),
        "memory_efficiency": (0.25, 0.5, 1.0),
        "node_overhead_us": (0.5, 1.0, 2.0, 3.0, 5.0, 10.0)}


def models_for(shape: tuple[int, int, int], workdir: Path):
    """(name, precision, ONNX model) for every zoo model at ``shape``, float and int8."""
    images = torch.randn(256, *shape)
    calibration = DataLoader(TensorDataset(images, torch.zeros(256, dtype=torch.long)), batch_size=32)
    for name in MODELS:
        model = create_model(name, in_channels=shape[0], num_classes=10, input_size=shape[1:]).eval()
        float_model = export_float(model, shape)
        yield name, "fp32", float_model
        yield name, "int8", quantize_onnx(float_model, calibration, Scheme.CPU)


def measure_rows(workdir: Path, threads: int) -> list[dict]:
    rows = []
    for split, shape in SHAPES.items():
        for name, precision, model in models_for(shape, workdir):
            path = workdir / f"{name}-{precision}-{shape[1]}.onnx"
            onnx.save(model, str(path))
            for batch in BATCHES:
                measured = measure_latency(path, shape, batch, threads=threads, runs=200).median_ms
                rows.append({"model": name, "input_shape": list(shape), "precision": precision, "batch": batch,
                             "split": split, "measured_ms": round(measured, 4), "_path": path})
                print(rows[-1]["model"], shape, precision, batch, f"{measured:.3f} ms", flush=True)
    return rows


def median_error(rows: list[dict], target, calibration: Calibration) -> float:
    return statistics.median(abs(estimate(r, target, calibration) / r["measured_ms"] - 1) for r in rows)


def estimate(row: dict, target, calibration: Calibration) -> float:
    if "_costs" not in row:  # the graph's node costs do not depend on the calibration: computed once
        row["_costs"] = node_costs(onnx.load(str(row["_path"])), row["batch"])
    return roofline(row["_costs"], target, row["batch"], calibration).ms


def fit(rows: list[dict], target) -> Calibration:
    best, best_error = None, float("inf")
    for values in itertools.product(*GRID.values()):
        calibration = Calibration(**dict(zip(GRID, values)))
        error = median_error(rows, target, calibration)
        if error < best_error:
            best, best_error = calibration, error
    return best


def main() -> int:
    target = load_target("host")
    with tempfile.TemporaryDirectory(prefix="edgekd-estimator-") as tmp:
        rows = measure_rows(Path(tmp), target.threads)
        fitted = fit([r for r in rows if r["split"] == "fit"], target)
        for r in rows:
            r["estimated_ms"] = round(estimate(r, target, fitted), 4)
            r["abs_rel_error"] = round(abs(r["estimated_ms"] / r["measured_ms"] - 1), 3)
    held_out = [r["abs_rel_error"] for r in rows if r["split"] == "held-out"]
    in_sample = [r["abs_rel_error"] for r in rows if r["split"] == "fit"]
    result = {"host": target.description, "target_peak": target.peak.model_dump(),
              "memory_bandwidth_gbs": target.memory_bandwidth_gbs, "threads": target.threads,
              "calibration": fitted.model_dump(), "fitted_on": "the 28x28 rows (grid search, median abs rel error)",
              "median_abs_rel_error": statistics.median(held_out),
              "median_abs_rel_error_held_out": statistics.median(held_out),
              "median_abs_rel_error_fit_rows": statistics.median(in_sample),
              "median_abs_rel_error_all": statistics.median(held_out + in_sample),
              "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
              "versions": library_versions()}
    write_json(RESULTS / "estimator_host.json", result)
    print(f"fitted {fitted}; median abs rel error: held out {result['median_abs_rel_error_held_out']:.1%}, "
          f"fit rows {result['median_abs_rel_error_fit_rows']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
