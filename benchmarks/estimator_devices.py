"""How good is the latency estimate on real devices? Estimate vs published Jetson measurements.

Every published figure below is cited (document, table, software, power mode) and copied as
published; none is measured here. The architectures are built locally (latency does not depend
on the weights): ResNet-50 v1.5 from the zoo, RetinaNet and YOLOv8n from
``benchmarks/estimator_models.py``; int8 models are the float export quantized by edgekd's own
TensorRT scheme (NNCF PTQ, Q/DQ on every conv input and both residual-add inputs).

One TensorRT calibration (efficiencies relative to each profile's own peaks) is fitted (grid
search, median absolute relative error) on the ``fit`` rows: ResNet-50 on the Jetson AGX Orin
only. Everything else is held out: the other models (RetinaNet, YOLOv8n), the other devices
(Orin NX, Orin Nano). The held-out error per device is written into ``targets/<device>.yaml``.

Run: .venv/bin/python benchmarks/estimator_devices.py  (about 3 minutes on 2 cores)
Writes benchmarks/results/estimator_devices.json.
"""

from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from edgekd.atomic import write_json
from edgekd.estimate import kernel_costs, roofline
from edgekd.models import create_model
from edgekd.onnx_export import export_onnx
from edgekd.quantize.ptq import BiasCorrection, quantize_onnx
from edgekd.quantize.scheme import Scheme
from edgekd.targets import Calibration, load_target
from edgekd.versions import library_versions

sys.path.insert(0, str(Path(__file__).parent))
from estimator_models import RetinaNet, YoloV8  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MLPERF = ("MLPerf Inference v3.1, closed division, edge, NVIDIA submission: "
          "github.com/mlcommons/inference_results_v3.1 closed/NVIDIA/results/{system}/{model}/{scenario}/performance/"
          "run_1/mlperf_log_summary.txt, '50.00 percentile latency'; systems/{system}.json: JetPack 5.1.1, "
          "TensorRT 8.5.2, CUDA 11.4; MaxP (MAXN) power setting, GPU only ({scenario}: "
          "{batch} sample(s) per query, configs/resnet50/MultiStream gpu_batch_size 8)")
YOLO = ("hokwangchoi/jetson-orin-nano-benchmarks vision-benchmarks/assets/results/yolov8_20260414_223810.json "
        "(blog: hokwangchoi.com/blog/vision-benchmarks): trtexec 'GPU Compute Time', mean of 5 × 15 s; "
        "Jetson Orin Nano 8GB developer kit, L4T 36.4.7 (JetPack 6.2), TensorRT 10.3, MAXN_SUPER")
ARCHITECTURES = {  # name: (build, input shape)
    "resnet50": (lambda: create_model("resnet50-imagenet", num_classes=1000, input_size=(224, 224)), (3, 224, 224)),
    "retinanet": (lambda: RetinaNet(), (3, 800, 800)),
    "yolov8n": (lambda: YoloV8(), (3, 640, 640)),
}


def mlperf(model: str, device: str, system: str, batch: int, ms: float, split: str) -> dict:
    scenario = "SingleStream" if batch == 1 else "MultiStream"
    return {"model": model, "device": device, "precision": "int8", "batch": batch, "published_ms": ms,
            "split": split, "source": MLPERF.format(system=system, model=model, scenario=scenario, batch=batch),
            "cited_as": f"MLPerf Inference v3.1 {system} {scenario} (TensorRT 8.5.2, MAXN)"}


PUBLISHED = [
    mlperf("resnet50", "jetson-orin", "Orin_TRT", 1, 0.636227, "fit"),
    mlperf("resnet50", "jetson-orin", "Orin_TRT", 8, 2.162887, "fit"),
    mlperf("resnet50", "jetson-orin-nx", "Orin_NX_TRT", 1, 1.078494, "held-out"),
    mlperf("resnet50", "jetson-orin-nx", "Orin_NX_TRT", 8, 5.078490, "held-out"),
    mlperf("retinanet", "jetson-orin", "Orin_TRT", 1, 11.560481, "held-out"),
    mlperf("retinanet", "jetson-orin", "Orin_TRT", 8, 82.500876, "held-out"),
    mlperf("retinanet", "jetson-orin-nx", "Orin_NX_TRT", 1, 28.428865, "held-out"),
    mlperf("retinanet", "jetson-orin-nx", "Orin_NX_TRT", 8, 215.647169, "held-out"),
    {"model": "yolov8n", "device": "jetson-orin-nano", "precision": "int8", "batch": 1, "published_ms": 3.49,
     "split": "held-out", "source": YOLO + ", INT8 row", "cited_as": "hokwangchoi trtexec (TensorRT 10.3, MAXN_SUPER)"},
    {"model": "yolov8n", "device": "jetson-orin-nano", "precision": "fp16", "batch": 1, "published_ms": 4.43,
     "split": "held-out", "source": YOLO + ", FP16 row", "cited_as": "hokwangchoi trtexec (TensorRT 10.3, MAXN_SUPER)"},
]
# Published but not used: the same file's TensorRT FP32 row (8.36 ms) runs TF32 tensor-core kernels
# (TensorRT's default on Ampere), a peak no profile carries; MLPerf's Offline results use the GPU and
# both DLAs together; MaxQ results run other clocks than the profiles'.
GRID = {"compute_efficiency": (0.15, 0.2, 0.3, 0.4, 0.5, 0.6),
        "int8_compute_efficiency": (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6),
        "int8_grouped_efficiency": (0.05, 0.1, 0.2),
        "memory_efficiency": (0.5, 0.7, 0.9),
        "kernel_overhead_us": (0.0, 1.0, 2.0, 3.0, 5.0),
        "inference_overhead_us": (0.0, 25.0, 50.0, 100.0, 200.0)}


def onnx_models() -> dict[tuple[str, str], object]:
    """(architecture, precision) → ONNX model: the float export, and edgekd's TensorRT-scheme int8 of it."""
    torch.manual_seed(0)
    models = {}
    for name, (build, shape) in ARCHITECTURES.items():
        float_model = export_onnx(build().eval(), shape)
        images = torch.randn(2, *shape)
        calibration = DataLoader(TensorDataset(images, torch.zeros(2, dtype=torch.long)), batch_size=1)
        models[name, "fp16"] = float_model
        models[name, "int8"] = quantize_onnx(float_model, calibration, Scheme.TENSORRT,
                                             bias_correction=BiasCorrection.FAST).model
        print(f"{name}: exported and quantized", flush=True)
    return models


def target_for(row: dict):
    target = load_target(row["device"])
    return target.model_copy(update={"precision": row["precision"]})


def estimate(row: dict, calibration: Calibration) -> float:
    return roofline(row["_costs"], row["_target"], row["batch"], calibration).ms


def error(row: dict, calibration: Calibration) -> float:
    return abs(estimate(row, calibration) / row["published_ms"] - 1)


def fit(rows: list[dict]) -> Calibration:
    """The grid point with the smallest median error on ``rows`` (ties: the smallest worst error)."""
    best, best_key = None, (float("inf"), float("inf"))
    for values in itertools.product(*GRID.values()):
        calibration = Calibration(**dict(zip(GRID, values)))
        errors = [error(r, calibration) for r in rows]
        key = (round(statistics.median(errors), 3), max(errors))
        if key < best_key:
            best, best_key = calibration, key
    return best


def per_device(rows: list[dict]) -> dict:
    out = {}
    for device in sorted({r["device"] for r in rows}):
        held = [r["abs_rel_error"] for r in rows if r["device"] == device and r["split"] == "held-out"]
        if held:
            out[device] = {"held_out": len(held), "median_abs_error": round(statistics.median(held), 3),
                           "max_abs_error": round(max(held), 3),
                           "sources": sorted({r["cited_as"] for r in rows if r["device"] == device})}
    return out


def main() -> int:
    models = onnx_models()
    rows = [dict(r) for r in PUBLISHED]
    for r in rows:
        r["_target"] = target_for(r)
        r["_costs"] = kernel_costs(models[r["model"], r["precision"]], r["_target"], r["batch"])
    fitted = fit([r for r in rows if r["split"] == "fit"])
    for r in rows:
        r["estimated_ms"] = round(estimate(r, fitted), 4)
        r["abs_rel_error"] = round(abs(r["estimated_ms"] / r["published_ms"] - 1), 3)
        r["kernels"] = len(r["_costs"])
    held = [r["abs_rel_error"] for r in rows if r["split"] == "held-out"]
    result = {"runtime": "tensorrt", "calibration": fitted.model_dump(exclude={"validation"}),
              "fitted_on": "ResNet-50 on jetson-orin, batch 1 and 8 (grid search, median abs rel error)",
              "median_abs_rel_error_held_out": statistics.median(held), "held_out_rows": len(held),
              "max_abs_rel_error_held_out": max(held),
              "median_abs_rel_error_fit_rows": statistics.median(
                  r["abs_rel_error"] for r in rows if r["split"] == "fit"),
              "per_device": per_device(rows),
              "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
              "versions": library_versions()}
    write_json(RESULTS / "estimator_devices.json", result)
    for r in rows:
        print(f"{r['model']:10s} {r['device']:17s} {r['precision']} b{r['batch']} {r['split']:8s} "
              f"published {r['published_ms']:.3f} estimated {r['estimated_ms']:.3f} ({r['abs_rel_error']:.0%})")
    print(f"fitted {fitted}; held-out median {result['median_abs_rel_error_held_out']:.1%} "
          f"over {len(held)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
