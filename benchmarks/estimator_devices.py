"""How good is the latency estimate on real devices? Leave-one-model-out against published Jetson figures.

Every published figure below is cited (document, table, software, power mode) and copied as
published; none is measured here. The architectures are built locally (latency does not depend
on the weights): ResNet-50 v1.5 from the zoo, the detectors from ``benchmarks/estimator_models.py``;
int8 models are the float export quantized by edgekd's own TensorRT scheme (NNCF PTQ, Q/DQ on every
conv input and both residual-add inputs).

One TensorRT calibration (efficiencies relative to each profile's own peaks, overheads in µs) is
chosen from a fixed grid (``GRID`` in ``estimator_fit.py``) in one of four declared forms (``VARIANTS``:
one launch overhead for all devices or one per device, fitted to the smallest median error or to the
smallest mean |ln(estimate/published)| with every family weighing the same). Cross-validation holds one
model family out at a time (a family: one architecture's widths, resolutions and heads) and is nested:
the form, too, is chosen without the held-out family, by leave-one-family-out over the others, then
fitted on them and used to predict every row of the held-out family (all devices, batches,
precisions), so every row has exactly one held-out prediction that none of its family's rows shaped.
The profiles carry the form that leave-one-family-out over all families picks, fitted on all rows; their
``±`` is the nested held-out median error of their own device's rows, and their validated range is
what those rows span. Until the 2026-12-06 revision (``REVISIONS``) there was one form, the shared
median one, and the folds were not nested.

Ultralytics' Jetson guide (YOLO11 n/s/m/l/x, TensorRT FP16 and INT8, three boards) adds 30 rows after the
calibration had been fitted on the first 28: ``first_looks`` is that calibration's error on them, before
any refit. The guide's later tables re-ran the same boards (``REPEATS``): how far two published runs of
one setup differ (``repeat_spread``) is the floor no estimator can beat. The same guide's earlier YOLOv8 tables and MIT Han Lab's EfficientViT READMEs followed, each first predicted by
the calibration committed before it. YOLO11's five widths are one
family and are held out together (so are YOLOv8's, and EfficientViT's widths, resolutions and heads); ``per_family`` gives each family's error (the row median weighs
families by their row counts). NVIDIA's YOLOv7 rows (yolo_deepstream READMEs: trtexec on an AGX Orin, batch 1
and 16, with and without a CUDA graph) came after the nested revision: their first look compares the revised
calibration with the one it replaced, on rows neither was fitted on.

MLPerf rows are LoadGen's median latency per query: SingleStream = 1 sample, MultiStream = 8
samples, run as 8 / ``gpu_batch_size`` engine executions one after another (the batch size is in
each round's ``closed/NVIDIA/configs/<model>/MultiStream/__init__.py``). ``cuda_graph`` says
whether the harness replayed the engine as a CUDA graph (``use_graphs`` in the same configs); the
calibration's ``launch_overhead_us`` is paid per kernel only where it did not (trtexec, and
MLPerf configs with ``use_graphs = False``).

Run: .venv/bin/python benchmarks/estimator_devices.py [--write-profiles] [--model-cache DIR]  (on 2 cores: under
3 minutes to export and quantize the models, which --model-cache saves, and about 15 for the nested
cross-validation's fits: for each form, every pair of families left out, every family, and none; the per-device
forms try 125 launch combinations a fit)
Writes benchmarks/results/estimator_devices.json; with --write-profiles also the ``estimate:``
block of targets/jetson-orin*.yaml.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from edgekd.atomic import write_json, write_text
from edgekd.estimate import KernelCost, ModelSummary, kernel_costs, roofline
from edgekd.models import create_model
from edgekd.onnx_export import export_onnx
from edgekd.quantize.ptq import BiasCorrection, quantize_onnx
from edgekd.quantize.scheme import Scheme
from edgekd.targets import Calibration, load_target
from edgekd.versions import library_versions

sys.path.insert(0, str(Path(__file__).parent))
from estimator_fit import DEVICES, GRID, VARIANTS, Fitter, choice_at, grid_points  # noqa: E402
from estimator_models import (EfficientViTCls, EfficientViTSeg, RetinaNet, SSDMobileNetV1, SSDResNet34,  # noqa: E402
                              Yolo11, YoloV7, YoloV8)

RESULTS = Path(__file__).parent / "results"
TARGETS = Path(__file__).parent.parent / "targets"
ARCHITECTURES = {  # name: (build, input shape)
    "resnet50": (lambda: create_model("resnet50-imagenet", num_classes=1000, input_size=(224, 224)), (3, 224, 224)),
    "ssd-mobilenet": (lambda: SSDMobileNetV1(), (3, 300, 300)),
    "ssd-resnet34": (lambda: SSDResNet34(), (3, 1200, 1200)),
    "retinanet": (lambda: RetinaNet(), (3, 800, 800)),
    **{f"yolov8{size}": ((lambda size=size: YoloV8(size)), (3, 640, 640)) for size in "nsmlx"},
    **{f"yolo11{size}": ((lambda size=size: Yolo11(size)), (3, 640, 640)) for size in "nsmlx"},
    "yolov7": (lambda: YoloV7(), (3, 640, 640)),
    **{f"efficientvit-{v}-r{r}": ((lambda v=v, r=r: EfficientViTCls(v, r)), (3, r, r))
       for v in ("b1", "b2", "b3") for r in (224, 256, 288)},
    **{f"efficientvit-seg-{v}-{d}": ((lambda v=v, d=d: EfficientViTSeg(v, d)), shape)
       for d, variants, shape in (("cityscapes", ("b0", "b1", "b2", "b3"), (3, 1024, 2048)),
                                  ("ade20k", ("b1", "b2", "b3"), (3, 512, 512))) for v in variants},
}
# held out together: one architecture at several widths (and, for EfficientViT, resolutions and heads)
FAMILIES = {**{f"{family}{size}": family for family in ("yolov8", "yolo11") for size in "nsmlx"},
            **{name: "efficientvit" for name in ARCHITECTURES if name.startswith("efficientvit")}}
SYSTEMS = {  # (round, system) → device, software as the round's systems/<system>.json states it
    ("v2.0", "Orin_TRT"): ("jetson-orin", "JetPack 5.0, TensorRT 8.4.0, CUDA 11.4 (preview)"),
    ("v2.1", "Orin_TRT"): ("jetson-orin", "22.08 Jetson CUDA-X AI Developer Preview, TensorRT 8.5.0, CUDA 11.4"),
    ("v3.0", "Orin_TRT"): ("jetson-orin", "23.02 Jetson CUDA-X AI Developer Preview, TensorRT 8.5.2, CUDA 11.4"),
    ("v3.0", "Orin_NX_TRT"): ("jetson-orin-nx", "Connecttech Orin NX L4T image, TensorRT 8.5.2, CUDA 11.4"),
    ("v3.1", "Orin_TRT"): ("jetson-orin", "JetPack 5.1.1, TensorRT 8.5.2, CUDA 11.4"),
    ("v3.1", "Orin_NX_TRT"): ("jetson-orin-nx", "JetPack 5.1.1, TensorRT 8.5.2, CUDA 11.4"),
}
YOLO = ("hokwangchoi/jetson-orin-nano-benchmarks vision-benchmarks/assets/results/yolov8_20260414_223810.json "
        "(blog: hokwangchoi.com/blog/vision-benchmarks): trtexec 'GPU Compute Time', mean of 5 × 15 s, no CUDA graph; "
        "Jetson Orin Nano 8GB developer kit, L4T 36.4.7 (JetPack 6.2), TensorRT 10.3, MAXN_SUPER")


def mlperf(round_: str, system: str, model: str, scenario: str, ns: int, *, engine_batch: int = 0,
           cuda_graph: bool = True) -> dict:
    """One MLPerf Inference closed-division row: '50.00 percentile latency (ns)' of the run_1 summary."""
    device, software = SYSTEMS[round_, system]
    samples = 1 if scenario == "SingleStream" else 8
    engine_batch = engine_batch or samples
    return {"model": model, "device": device, "precision": "int8", "batch": samples, "engine_batch": engine_batch,
            "executions": samples // engine_batch, "cuda_graph": cuda_graph, "published_ms": ns / 1e6,
            "published_as": f"{ns} ns median latency per query ({samples} sample{'s' if samples > 1 else ''})",
            "source": f"MLPerf Inference {round_}, closed division, edge, NVIDIA: github.com/mlcommons/"
                      f"inference_results_{round_} closed/NVIDIA/results/{system}/{model}/{scenario}/performance/"
                      f"run_1/mlperf_log_summary.txt, '50.00 percentile latency (ns)'; systems/{system}.json: "
                      f"{software}; MaxP (MAXN), GPU only outside Offline; configs/{model}/{scenario}: gpu_batch_size "
                      f"{engine_batch}, use_graphs {cuda_graph}",
            "cited_as": f"MLPerf Inference {round_} {system} {model} {scenario}"}


def trtexec(precision: str, ms: float) -> dict:
    return {"model": "yolov8n", "device": "jetson-orin-nano", "precision": precision, "batch": 1, "engine_batch": 1,
            "executions": 1, "cuda_graph": False, "published_ms": ms, "published_as": f"{ms} ms GPU compute time",
            "source": f"{YOLO}, TensorRT {precision.upper()} row",
            "cited_as": f"hokwangchoi trtexec yolov8n {precision} (TensorRT 10.3, MAXN_SUPER)"}


ULTRALYTICS = {  # device: (table heading in the guide, software as the guide states it, Ultralytics version)
    "jetson-orin": ("Detailed Comparison Tables / NVIDIA Jetson AGX Orin Developer Kit (64GB)", "JetPack 6.2",
                    "8.3.133"),
    "jetson-orin-nx": ("Detailed Comparison Tables / NVIDIA Jetson Orin NX 16GB (Seeed reComputer J4012)",
                       "JetPack 6.0 (the guide names 6.0 and 5.1.3 for this board)", "8.3.51"),
    "jetson-orin-nano": ("Detailed Comparison Tables / NVIDIA Jetson Orin Nano Super Developer Kit", "JetPack 6.1",
                         "8.3.51"),
}
ULTRALYTICS_GUIDE = ("github.com/ultralytics/ultralytics docs/en/guides/nvidia-jetson.md at commit {commit}, '{heading}', "
                     "tab {name}, row 'TensorRT ({precision})', column 'Inference time (ms/im)'; {software}; Ultralytics "
                     "{version}. Measured by `yolo benchmark` (model.val, batch 1, 640 px): Python dispatch + a "
                     "blocking execute_v2 per image, no CUDA graph, no pre/post-processing")
YOLO11_COMMIT = "75231dff8a5ef7908d9ca524c7109ef390e94ac5"
YOLO11_MS = {  # device: size: (FP16, INT8) ms/im as published at YOLO11_COMMIT
    "jetson-orin": {"n": (2.60, 2.45), "s": (3.68, 3.01), "m": (6.79, 5.12), "l": (8.11, 6.60), "x": (13.66, 9.78)},
    "jetson-orin-nano": {"n": (4.91, 3.91), "s": (7.30, 5.25), "m": (13.99, 9.58), "l": (17.57, 12.37),
                         "x": (32.94, 20.72)},
    "jetson-orin-nx": {"n": (4.85, 4.37), "s": (7.55, 5.63), "m": (14.45, 10.19), "l": (18.53, 13.36),
                       "x": (35.99, 22.32)},
}
YOLO11_REPEATS = {  # the same guide's later tables, the same boards re-run with Ultralytics 8.3.157 (coco128)
    "jetson-orin": {"n": (2.55, 2.18), "s": (3.65, 2.81), "m": (6.25, 4.69), "l": (8.08, 6.12), "x": (13.55, 9.40)},
    "jetson-orin-nano": {"n": (4.53, 3.70), "s": (6.93, 5.08), "m": (13.50, 9.12), "l": (17.48, 11.87),
                         "x": (32.58, 19.90)},
    "jetson-orin-nx": {"n": (4.73, 3.90), "s": (7.31, 5.33), "m": (14.48, 9.74), "l": (18.59, 12.60),
                       "x": (35.78, 21.60)},
}


YOLOV8_COMMIT = "fbc6bae5afe16fc06a8af6b3e2c5d7846649dc3f"  # 2024-09-09; the table stands until 8f0a9440
YOLOV8_GUIDE = {"jetson-orin-nx": ("NVIDIA Jetson Orin YOLOv8 Benchmarks / Detailed Comparison Table",
                                   "Seeed reComputer J4012 (Orin NX 16GB), JetPack 6.0 or 5.1.3 (the guide names both)", "8.2.90 (the repository's "
                                   "__version__ at that commit; the guide names none)")}
YOLOV8_MS = {"jetson-orin-nx": {"n": (4.55, 4.09), "s": (7.16, 5.49), "m": (14.88, 10.89), "l": (22.89, 14.61),
                                "x": (40.76, 22.08)}}  # size: (FP16, INT8) ms/im as published at YOLOV8_COMMIT


EFFICIENTVIT_COMMIT = "de7d7733cc0329f391b33f1f459271562ec27bd5"
EFFICIENTVIT_MS = {  # model: (README, table, published ms) in the 'Jetson Orin (bs1)' column at EFFICIENTVIT_COMMIT
    **{f"efficientvit-{v}-r{r}": ("applications/efficientvit_cls/README.md", "ImageNet, EfficientViT B series", ms)
       for (v, r), ms in {("b1", 224): 1.48, ("b1", 256): 1.57, ("b1", 288): 1.82, ("b2", 224): 2.63,
                          ("b2", 256): 2.84, ("b2", 288): 3.30, ("b3", 224): 4.36, ("b3", 256): 4.74,
                          ("b3", 288): 5.63}.items()},
    **{f"efficientvit-seg-{v}-{d}": ("applications/efficientvit_seg/README.md", table, ms)
       for (v, d), (table, ms) in {("b0", "cityscapes"): ("Cityscapes", 9.9), ("b1", "cityscapes"): ("Cityscapes", 24.3),
                                   ("b2", "cityscapes"): ("Cityscapes", 46.5), ("b3", "cityscapes"): ("Cityscapes", 81.8),
                                   ("b1", "ade20k"): ("ADE20K", 4.0), ("b2", "ade20k"): ("ADE20K", 7.3),
                                   ("b3", "ade20k"): ("ADE20K", 12.5)}.items()},
}


def efficientvit(model: str) -> dict:
    """One EfficientViT row (MIT Han Lab's READMEs): TensorRT fp16, batch 1, on a Jetson AGX Orin."""
    readme, table, ms = EFFICIENTVIT_MS[model]
    return {"model": model, "device": "jetson-orin", "precision": "fp16", "batch": 1, "engine_batch": 1,
            "executions": 1, "cuda_graph": False, "published_ms": ms, "published_as": f"{ms}ms, Jetson Orin (bs1)",
            "source": f"github.com/mit-han-lab/efficientvit {readme} at commit {EFFICIENTVIT_COMMIT}, table "
                      f"'{table}', column 'Jetson Orin (bs1)'; the README: 'measured on ... NVIDIA Jetson AGX Orin "
                      "... with TensorRT, fp16. Data transfer time is included.' (memory size, power mode, JetPack "
                      "and CUDA-graph use not stated: read as the 64GB module at MAXN, without a graph)",
            "cited_as": f"MIT Han Lab EfficientViT README {model} TensorRT fp16 (jetson-orin)"}


YOLOV7_SOURCES = {  # cuda_graph: (README, commit, table and column, the README's words on the run)
    False: ("README.md", "0cb4880abc23d33ed0c9d37404e074d1ba05dd33", "'Performance', rows 'OrinX' 'fp16' and "
            "'int8(PTQ/QAT)' (one figure for both), column 'trtexec FPS'", "'Testing Device: Jetson AGX Orin 64GB(PowerMode:MAXN + GPU-freq:1.3GHz + "
            "CPU:12-core-2.2GHz)'; 'trtexec cudaGraph not enabled'"),
    True: ("yolov7_qat/README.md", "0250bb51e49374c5930b78cdd67c4dffdf59054b", "rows 'TensorRT FP16' and "
           "'TensorRT QAT-INT8' (explicit Q/DQ), columns 'batch-1 fps Jetson Orin-X' and 'batch-16 fps Jetson "
           "Orin-X'", "'network input resolution: 3x640x640'; 'trtexec cudaGraph is enabled'; Orin-X read as the "
           "device the repository's README names OrinX"),
}
YOLOV7_FPS = {False: {("fp16", 1): 126, ("fp16", 16): 162, ("int8", 1): 180, ("int8", 16): 264},
              True: {("fp16", 1): 140, ("fp16", 16): 168, ("int8", 1): 207, ("int8", 16): 266}}


def yolov7(precision: str, batch: int, cuda_graph: bool) -> dict:
    """One YOLOv7 row of NVIDIA-AI-IOT/yolo_deepstream: trtexec throughput in images per second on an AGX Orin
    64GB, read as the time of one engine execution of ``batch`` images (1000 · batch / fps ms; trtexec enqueues
    the next execution while the GPU runs this one, so the CPU's launch time hides behind the GPU's). int8 is the
    QAT model's explicit Q/DQ, as edgekd exports int8; without a graph the README gives one figure for PTQ and QAT."""
    readme, commit, table, words = YOLOV7_SOURCES[cuda_graph]
    fps = YOLOV7_FPS[cuda_graph][precision, batch]
    ms = round(1000 * batch / fps, 4)
    return {"model": "yolov7", "device": "jetson-orin", "precision": precision, "batch": batch,
            "engine_batch": batch, "executions": 1, "cuda_graph": cuda_graph, "published_ms": ms,
            "published_as": f"{fps} FPS (trtexec, batch {batch})",
            "source": f"github.com/NVIDIA-AI-IOT/yolo_deepstream {readme} at commit {commit}, {table}; {words}; "
                      "TensorRT and JetPack versions not stated",
            "cited_as": f"NVIDIA yolo_deepstream YOLOv7 trtexec {precision} b{batch} "
                        f"{'with' if cuda_graph else 'without'} CUDA graph (jetson-orin)"}


def yolov7_rows() -> list[dict]:
    return [yolov7(precision, batch, graph) for graph in (False, True) for precision, batch in YOLOV7_FPS[graph]]


def ultralytics(family: str, device: str, size: str, precision: str, ms: float, *, guide: dict = ULTRALYTICS,
                version: str | None = None, commit: str = YOLO11_COMMIT) -> dict:
    """One row of Ultralytics' Jetson guide: ``family`` (yolo11, yolov8) ``size`` as a TensorRT engine, batch 1."""
    heading, software, published_version = guide[device]
    version = version or published_version
    name = f"{family.upper().replace('V', 'v')}{size}"
    return {"model": f"{family}{size}", "device": device, "precision": precision, "batch": 1, "engine_batch": 1,
            "executions": 1, "cuda_graph": False, "published_ms": ms, "published_as": f"{ms} ms/im inference time",
            "source": ULTRALYTICS_GUIDE.format(commit=commit, heading=heading, name=name, precision=precision.upper(),
                                               software=software, version=version),
            "cited_as": f"Ultralytics {version.split()[0]} Jetson guide {name} TensorRT {precision.upper()} ({device})"}


def guide_rows(family: str, table: dict, **source) -> list[dict]:
    return [ultralytics(family, device, size, precision, ms, **source) for device, sizes in table.items()
            for size, pair in sizes.items() for precision, ms in zip(("fp16", "int8"), pair)]


def yolo11_rows(table: dict, **source) -> list[dict]:
    return guide_rows("yolo11", table, **source)


def yolov8_rows() -> list[dict]:
    return guide_rows("yolov8", YOLOV8_MS, guide=YOLOV8_GUIDE, commit=YOLOV8_COMMIT)


PUBLISHED = [
    mlperf("v2.0", "Orin_TRT", "resnet50", "SingleStream", 691434),
    mlperf("v2.0", "Orin_TRT", "resnet50", "MultiStream", 3614098),
    mlperf("v2.0", "Orin_TRT", "ssd-mobilenet", "SingleStream", 469257),
    mlperf("v2.0", "Orin_TRT", "ssd-mobilenet", "MultiStream", 2330727),
    mlperf("v2.0", "Orin_TRT", "ssd-resnet34", "SingleStream", 8004660, cuda_graph=False),
    mlperf("v2.0", "Orin_TRT", "ssd-resnet34", "MultiStream", 60321654, engine_batch=2, cuda_graph=False),
    mlperf("v2.1", "Orin_TRT", "resnet50", "SingleStream", 641669),
    mlperf("v2.1", "Orin_TRT", "resnet50", "MultiStream", 2148309),
    mlperf("v2.1", "Orin_TRT", "retinanet", "SingleStream", 18044890, cuda_graph=False),
    mlperf("v2.1", "Orin_TRT", "retinanet", "MultiStream", 130040402, engine_batch=2, cuda_graph=False),
    mlperf("v3.0", "Orin_TRT", "resnet50", "SingleStream", 630245),
    mlperf("v3.0", "Orin_TRT", "resnet50", "MultiStream", 2168182),
    mlperf("v3.0", "Orin_TRT", "retinanet", "SingleStream", 13819301),
    mlperf("v3.0", "Orin_TRT", "retinanet", "MultiStream", 102204492, engine_batch=2),
    mlperf("v3.0", "Orin_NX_TRT", "resnet50", "SingleStream", 1084560),
    mlperf("v3.0", "Orin_NX_TRT", "resnet50", "MultiStream", 5042346),
    mlperf("v3.0", "Orin_NX_TRT", "retinanet", "SingleStream", 34038705),
    mlperf("v3.0", "Orin_NX_TRT", "retinanet", "MultiStream", 259260637, engine_batch=2),
    # v3.1: the MultiStream retinanet batch size is v3.0's (the v3.1 config file was not checked)
    mlperf("v3.1", "Orin_TRT", "resnet50", "SingleStream", 636227),
    mlperf("v3.1", "Orin_TRT", "resnet50", "MultiStream", 2162887),
    mlperf("v3.1", "Orin_TRT", "retinanet", "SingleStream", 11560481),
    mlperf("v3.1", "Orin_TRT", "retinanet", "MultiStream", 82500876, engine_batch=2),
    mlperf("v3.1", "Orin_NX_TRT", "resnet50", "SingleStream", 1078494),
    mlperf("v3.1", "Orin_NX_TRT", "resnet50", "MultiStream", 5078490),
    mlperf("v3.1", "Orin_NX_TRT", "retinanet", "SingleStream", 28428865),
    mlperf("v3.1", "Orin_NX_TRT", "retinanet", "MultiStream", 215647169, engine_batch=2),
    trtexec("int8", 3.49),
    trtexec("fp16", 4.43),
    *yolo11_rows(YOLO11_MS),
    *yolov8_rows(),
    *(efficientvit(model) for model in EFFICIENTVIT_MS),
    *yolov7_rows(),
]
# Rows added after the calibration above had been fitted and committed (it was fitted on the 28 rows before
# them): that calibration's error on them is a first look, held out by time, not by the fit rule.
ADDED = [{"batch": "yolo11", "added": "2026-12-06", "rows": [r["cited_as"] for r in yolo11_rows(YOLO11_MS)],
          "calibration_before": {"compute_efficiency": 0.2, "int8_compute_efficiency": 0.8,
                                 "int8_grouped_efficiency": 0.02, "memory_efficiency": 0.8, "on_chip_bytes": 0.0,
                                 "kernel_overhead_us": 2.0,
                                 "inference_overhead_us": 200.0, "launch_overhead_us": 20.0},
          "calibration_from": "the 28-row fit committed in ec1faf5"},
         {"batch": "yolov8", "added": "2026-12-06", "rows": [r["cited_as"] for r in yolov8_rows()],
          "calibration_before": {"compute_efficiency": 0.4, "int8_compute_efficiency": 0.5,
                                 "int8_grouped_efficiency": 0.2, "memory_efficiency": 1.0, "on_chip_bytes": 0.5e6,
                                 "kernel_overhead_us": 5.0, "inference_overhead_us": 100.0,
                                 "launch_overhead_us": 40.0},
          "calibration_from": "the 58-row fit committed in c4d11b7"},
         {"batch": "efficientvit", "added": "2026-12-06", "rows": [efficientvit(m)["cited_as"] for m in EFFICIENTVIT_MS],
          "calibration_before": {"compute_efficiency": 0.4, "int8_compute_efficiency": 0.6,
                                 "int8_grouped_efficiency": 0.05, "memory_efficiency": 0.4, "on_chip_bytes": 1e6,
                                 "kernel_overhead_us": 2.0, "inference_overhead_us": 200.0,
                                 "launch_overhead_us": 40.0},
          "calibration_from": "the 68-row fit committed in d917965",
          "note": "the READMEs do not say how the engine was run: read as without a CUDA graph (decided before the "
                  "first look), so each of the 92-281 kernels pays the launch overhead. With a graph assumed instead "
                  "(computed once after, not used) this first look reads 43.9% and the leave-one-family-out median "
                  "29.5%."},
         {"batch": "yolov7", "added": "2026-12-06", "rows": [r["cited_as"] for r in yolov7_rows()],
          "calibration_before": {device: {"compute_efficiency": 0.4, "int8_compute_efficiency": 0.8,
                                          "int8_grouped_efficiency": 0.02, "memory_efficiency": 0.4,
                                          "on_chip_bytes": 5e5, "kernel_overhead_us": 5.0, "inference_overhead_us": 0.0,
                                          "launch_overhead_us": launch}
                                 for device, launch in (("jetson-orin", 10.0), ("jetson-orin-nx", 40.0),
                                                        ("jetson-orin-nano", 40.0))},
          "calibration_from": "the 84-row per-device-log fit committed in f9e41a7 (the nested revision's first test)",
          "compared_with": {"calibration": {"compute_efficiency": 0.4, "int8_compute_efficiency": 0.6,
                                             "int8_grouped_efficiency": 0.1, "memory_efficiency": 0.4,
                                             "on_chip_bytes": 1e6, "kernel_overhead_us": 2.0,
                                             "inference_overhead_us": 200.0, "launch_overhead_us": 40.0},
                            "calibration_from": "the 84-row shared-median fit committed in abecdb4, before the revision"},
          "note": "the rows, the reading of FPS as 1000 x batch / fps ms, and which rows to leave out (PTQ-INT8, T4, "
                  "deepstream-app) were fixed before either calibration predicted them"}]
REPEATS = yolo11_rows(YOLO11_REPEATS, version="8.3.157", commit="a later commit of the same file (the tables that "
                      "add Jetson AGX Thor; 'Benchmarked with Ultralytics 8.3.157')")
NOT_USED = [
    "NVIDIA yolo_deepstream's YOLOv7 'TensorRT PTQ-INT8' rows (TensorRT's own calibrator, implicit quantization: "
    "TensorRT picks each layer's precision, not the explicit Q/DQ scheme built here), its T4 rows (not an Orin) "
    "and its deepstream-app FPS columns (a whole video pipeline, not the engine).",
    "MLPerf Offline results (GPU and both DLAs together) and MaxQ results (other clocks than the profiles').",
    "MLPerf v3.0 cTuning nvidia_orin-nvidia_original-gpu-tensorrt-v8.5.2.2 resnet50 (its system file says the "
    "DLAs are used; which scenarios is not stated).",
    "MLPerf v4.0 / v4.1: no Orin vision result (v4.0 Orin_TRT has GPT-J and SDXL only).",
    "3D-UNet: its latency depends on each KiTS19 volume's size (sliding windows), not one input shape.",
    "hokwangchoi YOLOv8n TensorRT FP32 row (8.36 ms) and Ultralytics' TensorRT (FP32) rows: TF32 tensor-core "
    "kernels, a peak no profile carries.",
    "Ultralytics' TensorRT integration page (docs/en/integrations/tensorrt.md at 10b3564a, YOLOv8n on Orin NX, FP16 "
    "3.19 / INT8 2.32 ms): dynamic-shape engines built for batch 8, run at batch 1.",
    "hokwangchoi yolov8_20260414_001146.json (YOLOv8n on Orin Nano, 15 W mode): no profile carries the 15 W clocks.",
    "NetsPresso Trainer's TensorRT device matrix (docs/benchmarks/device_matrix/tensorrt.md at 5c321318: ResNet, "
    "MobileNetV3, MixNet, EfficientFormer, YOLOX ... FP16): batch and power mode not stated; its Orin Nano rows ran "
    "JetPack 6.0, before the Super clocks the Nano profile carries.",
    "justincdavis/trtutils benchmark tables: a Python wall clock around the engine call; precision and batch are "
    "only in the benchmark code.",
    "torch2trt's README latencies: Jetson Nano and Xavier only, no Orin.",
    "Ultralytics' later 8.3.157 tables of the same boards: not fitted (a second reading of the same setups); they "
    "measure the spread between published runs (repeat_spread).",
    "Ultralytics-predict and DeepStream figures (the0807/YOLOv8-ONNX-TensorRT, Roboflow, DeepStream performance "
    "pages): they time Python pre/post-processing or whole video pipelines, not the engine.",
]
REVISIONS = [
    "The grid, the fit rule and the model were written before the first leave-one-model-out run (median "
    "44.1%). One change followed it: without a CUDA graph a kernel took its compute time plus the launch "
    "overhead; it now takes the longer of the two (the CPU enqueues while the GPU runs), which brought the "
    "median to 35.4% (28 rows).",
    "2026-12-06: 30 YOLO11 rows (Ultralytics' Jetson guide) were added; the calibration committed before them "
    "predicted them 18.0% off (median; the first look, below). Refitted with them, leave-one-family-out read 29.4% "
    "over 58 rows. After that was seen, one term was added: an activation of at most `on_chip_bytes` (grid 0-4 MB) "
    "stays in the on-chip cache between kernels and costs no DRAM traffic (AGX Orin's GPU has a 4 MB L2). That "
    "brought the median to 27.9%; 29.4% is the figure no held-out error had shaped.",
    "2026-12-06, later (written before any of it was computed): the fit's form is chosen inside the cross-"
    "validation. The 84-row fit reached 54.2% held out, and its folds swung between regimes (without YOLO11: fp16 "
    "efficiency 0.1 and YOLO11 fp16 up to 266% off; with it: 0.4): the row-median rule leaves half the training rows "
    "unconstrained, and one launch overhead cannot serve AGX Orin's EfficientViT rows (at most about 10 us per kernel) "
    "and the Orin NX and Nano YOLO rows (about 40 us). Four forms are declared (VARIANTS: one launch overhead or one "
    "per device, times the row-median rule or a mean |ln(estimate/published)| with each family weighted equally). "
    "For each held-out family the form is chosen by leave-one-family-out on the other families alone, then fitted "
    "on them and used to predict the held-out family, so no held-out row takes part in choosing either the form or "
    "its parameters (nested cross-validation); the profiles carry the form that leave-one-family-out over all "
    "families chooses, fitted on all rows. The forms were conceived after the 84 rows' errors had been seen (one, a "
    "launch overhead per device, was tried once in the last session: 45.2% with the median rule), so the figure is "
    "honest about the procedure, not blind to the data; the next batch's first look is its clean test.",
    "2026-12-06, after YOLOv7's 8 rows were added (first look above): refitted on 92 rows, the nested median read "
    "15.2% (21.5% on the 84 before), the shared-median form alone 26.2% (54.2% before); YOLO11's held-out error fell "
    "from 22% to 9% and SSD-ResNet34's rose from 10% to 51%: which families are in moves the figure a lot.",
    "2026-12-06, last, found by review after that run: a per-device form fitted without any row on one device gave "
    "that device the grid's first launch overhead (0 us), as in the inner folds that leave out both YOLO families "
    "(the Orin Nano's only rows). Such a fit now uses the form's shared counterpart. Re-run after the fix, no "
    "figure changed (15.2%, every fold's form and inner medians as before).",
]

def onnx_models(cache: Path | None = None) -> dict[tuple[str, str], object]:
    """(architecture, precision) → ONNX model: the float export, and edgekd's TensorRT-scheme int8 of it.

    With ``cache`` (a folder), models saved there by an earlier run are loaded instead of rebuilt.
    """
    import onnx

    torch.manual_seed(0)
    needed = {(r["model"], r["precision"]) for r in PUBLISHED}
    models = {}
    for name, (build, shape) in ARCHITECTURES.items():
        files = {p: cache / f"{name}-{p}.onnx" for p in ("fp16", "int8")} if cache else {}
        if files and all(f.exists() for p, f in files.items() if p == "fp16" or (name, p) in needed):
            models.update({(name, p): onnx.load(str(f)) for p, f in files.items() if f.exists()})
            continue
        float_model = export_onnx(build().eval(), shape)
        models[name, "fp16"] = float_model
        if (name, "int8") in needed:
            images = torch.randn(2, *shape)
            calibration = DataLoader(TensorDataset(images, torch.zeros(2, dtype=torch.long)), batch_size=1)
            models[name, "int8"] = quantize_onnx(float_model, calibration, Scheme.TENSORRT,
                                                 bias_correction=BiasCorrection.FAST).model
        for precision, path in files.items():
            if (name, precision) in models:
                cache.mkdir(parents=True, exist_ok=True)
                onnx.save(models[name, precision], str(path))
        print(f"{name}: exported and quantized", flush=True)
    return models


class RowArrays:
    """One row's kernels as arrays, with its device's peaks: what the vectorized grid search needs."""

    def __init__(self, row: dict, costs: list[KernelCost]):
        target = load_target(row["device"])
        self.flops = np.array([c.flops for c in costs])
        self.dram_bytes = {t: np.array([c.dram_bytes(t) for c in costs]) for t in GRID["on_chip_bytes"]}
        self.int8 = np.array([c.int8 for c in costs])
        self.grouped = np.array([c.grouped for c in costs]) & self.int8
        self.kernels = len(costs)
        self.float_peak = target.peak.fp16_tflops * 1e12
        self.int8_peak = target.peak.int8_tops * 1e12
        self.bandwidth = target.memory_bandwidth_gbs * 1e9
        self.executions = row["executions"]
        self.cuda_graph = row["cuda_graph"]

    def ms(self, compute: np.ndarray, overheads: np.ndarray) -> np.ndarray:
        """Estimated ms at every grid point: shape (compute points, overhead points).

        Per kernel: max(compute, memory) time (Williams et al. 2009) + ``kernel_overhead_us``, memory counting
        only activations larger than ``on_chip_bytes`` (smaller ones stay in on-chip cache); without a
        CUDA graph the CPU enqueues every kernel (``launch_overhead_us`` each) while the GPU runs the
        previous ones, so a kernel takes the longer of the two; ``inference_overhead_us`` per execution.
        """
        ce, ie, ge, me = (compute[:, i:i + 1] for i in range(4))
        dram = np.stack([self.dram_bytes[t] for t in compute[:, 4]])  # (compute, kernels)
        attainable = np.where(self.int8, self.int8_peak * np.where(self.grouped, ge, ie), self.float_peak * ce)
        time = np.maximum(self.flops / attainable, dram / (self.bandwidth * me))  # seconds, (compute, kernels)
        total = np.empty((len(compute), len(overheads)))
        for kernel, launch in {(k, l) for k, _, l in overheads}:
            columns = (overheads[:, 0] == kernel) & (overheads[:, 2] == launch)
            per_kernel = time + kernel * 1e-6
            if not self.cuda_graph:
                per_kernel = np.maximum(per_kernel, launch * 1e-6)
            total[:, columns] = per_kernel.sum(axis=1)[:, None] + overheads[columns, 1][None, :] * 1e-6
        return 1e3 * total * self.executions


def predictions(arrays: list[RowArrays]) -> np.ndarray:
    """Estimated ms of every row at every grid point: (compute, kernel x inference overhead, launch, rows)."""
    compute, overheads = grid_points()
    flat = np.stack([a.ms(compute, overheads) for a in arrays], axis=-1)
    return flat.reshape(len(compute), -1, len(GRID["launch_overhead_us"]), len(arrays))


def summary_of(costs: list[KernelCost], target) -> dict:
    """MACs, parameters and kernel kinds of one architecture at batch 1 (what a validated range spans)."""
    summary = ModelSummary.of(costs, target)
    return {"macs": int(summary.macs), "params": summary.params, "kernels": list(summary.kernels)}


def per_device(rows: list[dict], summaries: dict) -> dict:
    """Per device: the LOMO error of its rows, and the range they validate (what the profile records)."""
    out = {}
    for device in sorted({r["device"] for r in rows}):
        mine = [r for r in rows if r["device"] == device]
        errors = [r["lomo_abs_rel_error"] for r in mine]
        models = sorted({r["model"] for r in mine})
        out[device] = {
            "rows": len(mine), "models": models,
            "lomo_median_abs_error": round(statistics.median(errors), 3), "lomo_max_abs_error": round(max(errors), 3),
            "validated": {"macs_min": min(summaries[m]["macs"] for m in models),
                          "macs_max": max(summaries[m]["macs"] for m in models),
                          "params_min": min(summaries[m]["params"] for m in models),
                          "params_max": max(summaries[m]["params"] for m in models),
                          "kernels": sorted({k for m in models for k in summaries[m]["kernels"]}),
                          "precisions": sorted({r["precision"] for r in mine}),
                          "batch_min": min(r["batch"] for r in mine), "batch_max": max(r["batch"] for r in mine),
                          "models": models},
            "sources": sorted({r["cited_as"] for r in mine})}
    return out


def check_against_library(rows: list[dict], costs: dict, calibrations: dict) -> None:
    """The vectorized grid search and edgekd.estimate.roofline must give the same figure for every row."""
    for r in rows:
        target = load_target(r["device"]).model_copy(update={"precision": r["precision"]})
        ms = r["executions"] * roofline(costs[r["model"], r["precision"], r["engine_batch"]], target,
                                        r["engine_batch"], Calibration(**calibrations[r["device"]]),
                                        cuda_graph=r["cuda_graph"]).ms
        if abs(ms / r["fit_estimated_ms"] - 1) > 1e-3:
            raise AssertionError(f"{r['cited_as']}: roofline {ms:.4f} ms, grid search {r['fit_estimated_ms']:.4f} ms")


def family(model: str) -> str:
    return FAMILIES.get(model, model)


def cross_validate(rows: list[dict], estimates: np.ndarray) -> dict:
    """Nested leave-one-family-out (the form chosen without the held-out family too), then the form
    leave-one-family-out chooses over all families, fitted on all rows: what the profiles carry."""
    fitter = Fitter(estimates, np.array([r["published_ms"] for r in rows]), [family(r["model"]) for r in rows],
                    [r["device"] for r in rows])
    held_out, folds = fitter.nested()
    variant = fitter.select()
    final = fitter.fit(variant, frozenset())
    fitted = final.predict(estimates, fitter.device_index)
    for r, lomo, fit in zip(rows, held_out, fitted):
        r["lomo_estimated_ms"] = round(float(lomo), 4)
        r["lomo_abs_rel_error"] = round(abs(r["lomo_estimated_ms"] / r["published_ms"] - 1), 4)
        r["fit_estimated_ms"] = round(float(fit), 4)
        r["fit_abs_rel_error"] = round(abs(r["fit_estimated_ms"] / r["published_ms"] - 1), 4)
    return {"variant": variant, "calibration": {d: final.calibration(d) for d in DEVICES}, "folds": folds,
            "per_variant": fitter.per_variant(), "fitter": fitter}


def first_looks(rows: list[dict], fitter: Fitter) -> list[dict]:
    """Each ADDED batch predicted by the calibration committed before it: rows no fit had seen (and, where the
    batch names one, by an earlier calibration too: a revision tested on rows neither was fitted on)."""
    def errors(calibration: dict, batch: dict) -> list[float]:
        estimated = choice_at(calibration).predict(fitter.estimates, fitter.device_index)
        return [abs(float(estimated[i]) / r["published_ms"] - 1) for i, r in enumerate(rows)
                if r["cited_as"] in batch["rows"]]

    out = []
    for batch in ADDED:
        mine = errors(batch["calibration_before"], batch)
        look = {**{k: v for k, v in batch.items() if k != "rows"}, "rows": len(mine),
                "median_abs_rel_error": round(statistics.median(mine), 4), "max_abs_rel_error": round(max(mine), 4)}
        if "compared_with" in batch:
            theirs = errors(batch["compared_with"]["calibration"], batch)
            look["compared_with"] = {**batch["compared_with"], "median_abs_rel_error": round(statistics.median(theirs), 4),
                                     "max_abs_rel_error": round(max(theirs), 4)}
        out.append(look)
    return out


def per_family(rows: list[dict]) -> dict:
    """Held-out error per model family: a row median would let the family with the most rows decide."""
    out = {}
    for name in dict.fromkeys(family(r["model"]) for r in rows):
        errors = [r["lomo_abs_rel_error"] for r in rows if family(r["model"]) == name]
        out[name] = {"rows": len(errors), "lomo_median_abs_rel_error": round(statistics.median(errors), 4),
                     "lomo_max_abs_rel_error": round(max(errors), 4)}
    return out


def repeat_spread(rows: list[dict]) -> dict:
    """How far the same board, model and precision read in a later published run: the measurement floor."""
    first = {(r["model"], r["device"], r["precision"]): r["published_ms"] for r in rows}
    spread = [abs(r["published_ms"] / first[r["model"], r["device"], r["precision"]] - 1) for r in REPEATS]
    return {"pairs": len(spread), "median_abs_rel_difference": round(statistics.median(spread), 4),
            "max_abs_rel_difference": round(max(spread), 4), "source": REPEATS[0]["source"]}


def profile_block(device: str, result: dict) -> str:
    """The ``estimate:`` block of targets/<device>.yaml, from the benchmark's result."""
    c, d = result["calibration"][device], result["per_device"][device]
    v = d["validated"]
    sources = "\n".join(f'      - "{s}"' for s in d["sources"])
    honest = ("" if d["lomo_median_abs_error"] <= 0.2 else
              f"\n# Far off: this device's rows are {d['lomo_median_abs_error']:.0%} off held out (median; worst "
              f"{d['lomo_max_abs_error']:.0%}),\n# above the 20% target: every estimate's ± says so.")
    return f"""# Latency-estimate calibration, fitted on the three Orin profiles' rows together (efficiencies are fractions
# of each profile's own peaks). Written by benchmarks/estimator_devices.py --write-profiles: chosen from a fixed
# grid on all {result['row_count']} published rows ({len(result['models'])} models, 3 Orin devices), in the form
# '{result['variant']}' (benchmarks/estimator_fit.py, VARIANTS) that leave-one-model-out chose. The ± below is
# this device's nested leave-one-model-out error (each model family's rows predicted by the form and calibration
# chosen without it), and `validated` is the range its rows span: estimates outside it say "unvalidated".{honest}
estimate:
{chr(10).join(f"  {k}: {c[k]}" for k in GRID)}
  validation:
    held_out: {d['rows']}
    median_abs_error: {d['lomo_median_abs_error']}
    max_abs_error: {d['lomo_max_abs_error']}
    fitted_on: {result['row_count']}
    method: nested leave-one-model-out
    benchmark: benchmarks/estimator_devices.py
    validated:
      macs: [{v['macs_min']}, {v['macs_max']}]
      params: [{v['params_min']}, {v['params_max']}]
      kernels: [{', '.join(v['kernels'])}]
      precisions: [{', '.join(v['precisions'])}]
      batch: [{v['batch_min']}, {v['batch_max']}]
      models: [{', '.join(v['models'])}]
    sources:
{sources}
"""


def write_profiles(result: dict) -> None:
    """Replace each Orin profile's calibration block (from its first calibration comment line to the end)."""
    for device in result["per_device"]:
        path = TARGETS / f"{device}.yaml"
        text = path.read_text()
        start = text.index("# Latency-estimate calibration")
        write_text(path, text[:start] + profile_block(device, result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-profiles", action="store_true", help="rewrite targets/jetson-orin*.yaml's estimate")
    parser.add_argument("--model-cache", type=Path, help="folder to keep the exported ONNX models in between runs")
    args = parser.parse_args(argv)
    models = onnx_models(args.model_cache)
    rows = [dict(r) for r in PUBLISHED]
    reference = load_target("jetson-orin")
    costs = {}
    for r in rows:
        key = r["model"], r["precision"], r["engine_batch"]
        if key not in costs:
            costs[key] = kernel_costs(models[r["model"], r["precision"]],
                                      reference.model_copy(update={"precision": r["precision"]}), r["engine_batch"])
        r["kernels"] = len(costs[key])
    summaries = {m: summary_of(kernel_costs(models[m, "int8"] if (m, "int8") in models else models[m, "fp16"],
                                            reference, 1), reference) for m in ARCHITECTURES}
    estimates = predictions([RowArrays(r, costs[r["model"], r["precision"], r["engine_batch"]]) for r in rows])
    fitted = cross_validate(rows, estimates)
    check_against_library(rows, costs, fitted["calibration"])
    errors = [r["lomo_abs_rel_error"] for r in rows]
    worst = max(rows, key=lambda r: r["lomo_abs_rel_error"])
    result = {
        "runtime": "tensorrt", "row_count": len(rows), "models": sorted({r["model"] for r in rows}),
        "devices": sorted({r["device"] for r in rows}),
        "lomo_median_abs_rel_error": round(statistics.median(errors), 4),
        "lomo_worst_row": {k: worst[k] for k in ("model", "device", "precision", "batch", "published_ms",
                                                 "lomo_estimated_ms", "lomo_abs_rel_error", "cited_as")},
        "fit_median_abs_rel_error": round(statistics.median(r["fit_abs_rel_error"] for r in rows), 3),
        "calibration": fitted["calibration"], "variant": fitted["variant"].name,
        "free_parameters": fitted["variant"].free_parameters, "grid": GRID, "fit_rule": fitted["variant"].describe,
        "cross_validation": "nested leave-one-model-out: each model family's rows (YOLO11 n/s/m/l/x together, "
                            "EfficientViT's widths, resolutions and heads together) predicted by the form and the "
                            "calibration chosen on the other families alone (the form by leave-one-family-out among "
                            "them)",
        "variants": fitted["per_variant"],
        "lomo_target": 0.2, "lomo_target_met": statistics.median(errors) <= 0.2,
        "revisions": REVISIONS,
        "per_family": per_family(rows), "first_looks": first_looks(rows, fitted["fitter"]),
        "repeat_spread": repeat_spread(PUBLISHED),
        "lomo_folds": fitted["folds"], "model_summaries": summaries, "per_device": {},
        "rows": rows, "not_used": NOT_USED, "versions": library_versions()}
    result["per_device"] = per_device(rows, summaries)
    write_json(RESULTS / "estimator_devices.json", result)
    if args.write_profiles:
        write_profiles(result)
    for r in rows:
        print(f"{r['model']:13s} {r['device']:17s} {r['precision']} b{r['batch']} published {r['published_ms']:8.3f} "
              f"LOMO {r['lomo_estimated_ms']:8.3f} ({r['lomo_abs_rel_error']:.0%}) fit {r['fit_estimated_ms']:8.3f} "
              f"({r['fit_abs_rel_error']:.0%})  {r['cited_as']}")
    print(f"fitted on all rows ({fitted['variant'].name}): {fitted['calibration']}")
    for model, fold in fitted["folds"].items():
        print(f"  without {model}: {fold['variant']} (inner {fold['inner_lomo_median']}): {fold['calibration']}")
    for name, v in fitted["per_variant"].items():
        print(f"  {name} alone: {v['lomo_median_abs_rel_error']:.1%} {v['per_family']}")
    print(f"LOMO median {result['lomo_median_abs_rel_error']:.1%} over {len(rows)} rows; worst "
          f"{worst['model']} {worst['device']} b{worst['batch']} {worst['lomo_abs_rel_error']:.0%}")
    for name, f in result["per_family"].items():
        print(f"  {name}: {f['lomo_median_abs_rel_error']:.1%} median on {f['rows']} rows, worst "
              f"{f['lomo_max_abs_rel_error']:.0%}")
    for look in result["first_looks"]:
        print(f"  first look at {look['batch']} ({look['rows']} rows, calibration before them): "
              f"{look['median_abs_rel_error']:.1%} median, worst {look['max_abs_rel_error']:.0%}"
              + (f"; the earlier one: {look['compared_with']['median_abs_rel_error']:.1%}, worst "
                 f"{look['compared_with']['max_abs_rel_error']:.0%}" if "compared_with" in look else ""))
    spread = result["repeat_spread"]
    print(f"  repeats: {spread['median_abs_rel_difference']:.1%} median, {spread['max_abs_rel_difference']:.0%} worst "
          f"over {spread['pairs']} re-published pairs")
    for device, d in result["per_device"].items():
        print(f"  {device}: ±{d['lomo_median_abs_error']:.0%} on {d['rows']} rows; validated {d['validated']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
