"""Train the default teacher on Fashion-MNIST and time it against PyTorch eager.

Writes benchmarks/results/teacher_fashion_mnist.json, and the trained weights to weights/ with their entry in
weights/shipped.yaml (so the default job loads them instead of training: edgekd/models/shipped.py).
Run: .venv/bin/python benchmarks/teacher_fashion_mnist.py   (about 17 minutes on 2 cores)
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

from edgekd.atomic import write_json
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.measure import count_macs, count_params
from edgekd.models.loading import build_model, save_weights
from edgekd.models.shipped import DEFAULT_TEACHER, ShippedWeights, record_teacher, sha256_of, weights_dir
from edgekd.onnx_export import export_onnx
from edgekd.recipe import load_recipe
from edgekd.runtime.onnxruntime import create_session, evaluate
from edgekd.targets import load_target
from edgekd.train import accuracy, fit
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"


def interleaved_latency(model, session, batch: int, shape, runs: int = 200, warmup: int = 20) -> dict:
    """PyTorch eager and ONNX Runtime timed alternately on the same input, so load noise hits both."""
    x = torch.randn(batch, *shape)
    feed = {session.get_inputs()[0].name: x.numpy()}
    times = {"pytorch": [], "onnxruntime": []}
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            session.run(None, feed)
            t2 = time.perf_counter()
            if i >= warmup:
                times["pytorch"].append((t1 - t0) * 1000)
                times["onnxruntime"].append((t2 - t1) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "runs": runs, "pytorch_ms": med["pytorch"], "onnxruntime_ms": med["onnxruntime"],
            "onnxruntime_over_pytorch": med["onnxruntime"] / med["pytorch"]}


def main() -> None:
    stage = load_recipe("default").stages[0]
    data = load_data(DataSpec())
    host = load_target("host")
    torch.set_num_threads(host.threads)
    model = build_model(stage.model, data.info)
    t0 = time.perf_counter()
    result = fit(model, data, stage.train)
    train_seconds = time.perf_counter() - t0
    model.eval()
    RESULTS.mkdir(exist_ok=True)
    weights = weights_dir() / DEFAULT_TEACHER
    save_weights(model, weights)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.onnx"
        onnx.save(export_onnx(model, (1, 28, 28)), str(path))  # opset 17, simplified (the defaults)
        val_loader = make_loader(data.report.unsealed(), data.info, batch_size=256, train=False)
        onnx_accuracy = evaluate(path, val_loader, threads=host.threads)
        pytorch_accuracy = accuracy(model, val_loader)
        session = create_session(path, threads=host.threads)
        latency = [interleaved_latency(model, session, b, (1, 28, 28)) for b in (1, 64)]
    report = {
        "model": stage.model, "params": count_params(model), "macs": count_macs(model, (1, 28, 28)),
        "epochs": stage.train.epochs, "train_config": stage.train.model_dump(mode="json"),
        "accuracy": pytorch_accuracy, "onnxruntime_accuracy": onnx_accuracy,  # the test set (report split)
        "selection_accuracy": result.accuracy,
        "train_seconds": round(train_seconds, 1), "history": result.history,
        "latency": latency, "host": host.description, "threads": host.threads,
        "machine": platform.machine(), "versions": library_versions(),
    }
    write_json(RESULTS / "teacher_fashion_mnist.json", report)
    record_teacher(ShippedWeights(model=stage.model, data=data.fingerprint(), train=stage.train.fingerprint(),
                                  file=weights.name, sha256=sha256_of(weights), report_accuracy=pytorch_accuracy,
                                  made_by="benchmarks/teacher_fashion_mnist.py"))
    print(json.dumps({k: report[k] for k in ("model", "params", "macs", "accuracy", "train_seconds")}))
    for row in latency:
        print(f"batch {row['batch']}: PyTorch {row['pytorch_ms']:.3f} ms, ONNX Runtime {row['onnxruntime_ms']:.3f} ms "
              f"({row['onnxruntime_over_pytorch']:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
