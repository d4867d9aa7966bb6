"""int8 where it pays, per layer: float vs all-int8 vs int8 with the slow layers float, on this host.

For each model, the CPU-scheme int8 model (NNCF PTQ, full bias correction, 512 calibration images)
is made twice: every conv quantized, and with the layers ONNX Runtime runs dequantized kept float
(what the quantize stage now ships for CPU targets, :mod:`edgekd.quantize.speed`). The three ONNX
models are timed side by side with ONNX Runtime (one thread per the host profile, 200 runs per
batch, ``--repeats`` rounds with fresh sessions, the median round kept), and scored on the full
Fashion-MNIST test set.

Models: the default recipe's 70K-parameter student (weights in results/, trained by
``quantize_fashion_mnist.py``) and ``mobilenetv2-0.5`` trained here briefly (10k images, 3 epochs:
its accuracy is low, its latency is what this measures).

Run: .venv/bin/python benchmarks/quantize_slow_layers.py [--repeats 3]
Writes benchmarks/results/quantize_slow_layers.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch
from safetensors.torch import load_file

from edgekd.atomic import write_json
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.models.loading import build_model
from edgekd.onnx_export import export_onnx
from edgekd.quantize.graph import module_name
from edgekd.quantize.int8 import onnx_accuracy
from edgekd.quantize.ptq import quantize_onnx
from edgekd.quantize.scheme import Scheme
from edgekd.quantize.speed import slow_int8_layers, without_slow_layers
from edgekd.runtime.onnxruntime import compare_latency
from edgekd.targets import load_target
from edgekd.train import TrainConfig, fit
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
STUDENT = RESULTS / "student_cnn_small_fashion_mnist.safetensors"


def models(data) -> dict:
    student = build_model("cnn-small", data.info)
    student.load_state_dict(load_file(STUDENT))
    torch.manual_seed(0)
    mobilenet = build_model("mobilenetv2-0.5", data.info)
    small = load_data(DataSpec(source="fashion-mnist", train_subset=10000))
    fit(mobilenet, small, TrainConfig(epochs=3, lr=0.05, augment=None), progress=False)
    return {"student (cnn-small)": student.eval(), "mobilenetv2-0.5": mobilenet.eval()}


def median_round(paths: list[Path], shape: tuple, batch: int, threads: int, repeats: int) -> list[float]:
    """Median milliseconds of each model over ``repeats`` side-by-side rounds."""
    rounds = [[s.median_ms for s in compare_latency(paths, shape, batch, threads=threads, runs=200)]
              for _ in range(repeats)]
    return [sorted(r[i] for r in rounds)[repeats // 2] for i in range(len(paths))]


def run(name: str, model, data, folder: Path, repeats: int) -> dict:
    host = load_target("host")
    shape = (data.info.channels, *data.info.image_size)
    calibration = make_loader(data.train.subset(512, seed=0), data.info, batch_size=64, train=False)
    val = make_loader(data.report.unsealed(), data.info, batch_size=256, train=False)
    float_model = export_onnx(model, shape)
    t0 = time.perf_counter()
    quantize = lambda keep: quantize_onnx(float_model, calibration, Scheme.CPU, keep_float=keep).model  # noqa: E731
    all_int8 = quantize([])
    shipped, slow = without_slow_layers(all_int8, quantize, lambda m: slow_int8_layers(
        float_model, m, host, here=True, batches=(1, 64), threads=host.threads), keep=[])
    seconds = time.perf_counter() - t0
    paths = [folder / f"{name}-{kind}.onnx" for kind in ("float", "int8", "int8-slow-float")]
    for path, proto in zip(paths, (float_model, all_int8, shipped)):
        onnx.save(proto, str(path))
    row = {"model": name, "slow_layers": [module_name(s.node) for s in slow], "quantize_seconds": round(seconds, 1),
           "accuracy": {kind: onnx_accuracy(proto, val, threads=host.threads)
                        for kind, proto in zip(("float", "int8", "int8_slow_float"), (float_model, all_int8, shipped))}}
    for batch in (1, 64):
        f, q, s = median_round(paths, shape, batch, host.threads, repeats)
        row[f"b{batch}"] = {"float_ms": round(f, 4), "int8_ms": round(q, 4), "int8_slow_float_ms": round(s, 4),
                            "int8_over_float": round(q / f, 3), "int8_slow_float_over_float": round(s / f, 3)}
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = load_data(DataSpec(source="fashion-mnist"))
    with tempfile.TemporaryDirectory(prefix="edgekd-slow-layers-") as tmp:
        rows = [run(name, model, data, Path(tmp), args.repeats) for name, model in models(data).items()]
    path = RESULTS / "quantize_slow_layers.json"
    write_json(path, {"dataset": "fashion-mnist", "host": load_target("host").description,
                      "timing": f"ONNX Runtime, median of {args.repeats} side-by-side rounds of 200 runs; "
                                "ratios over float (below 1: faster than float)",
                      "rows": rows, "versions": library_versions()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
