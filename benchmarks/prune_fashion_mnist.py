"""Structured pruning at 50% MACs on Fashion-MNIST: accuracy before/after recovery, host speed-up.

Rows run the pipeline's own ``prune`` stage (torch-pruning, the host profile's channel
multiple, KD recovery from the unpruned model). Then the unpruned and pruned models are
exported to ONNX and timed side by side (alternating runs, medians) with ONNX Runtime on this
machine, in ``--repeats`` rounds with fresh sessions (the median round is kept, all are recorded),
and the pruned ONNX is checked against PyTorch on the whole test set.

* ``cnn``: the default teacher (its weights in results/), recovery on all 60,000 images.
* ``resnet56`` and ``mobilenetv2``: trained briefly here on a subset (no pretrained weights
  exist for 28×28 grey images), then pruned and given a short recovery on the same subset.

Run: .venv/bin/python benchmarks/prune_fashion_mnist.py [--only cnn-l2 ...]
Writes benchmarks/results/prune_fashion_mnist.json (``--only`` merges into it).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.distill.recovery import RecoveryConfig
from edgekd.measure import count_macs, count_params
from edgekd.models.loading import build_model
from edgekd.models.shipped import DEFAULT_TEACHER, weights_dir
from edgekd.onnx_export import check_parity, export_onnx
from edgekd.runtime.compare import HostComparer
from edgekd.stages.base import Handoff, ReportRow
from edgekd.stages.prune import PruneStage
from edgekd.targets import load_target
from edgekd.train import Schedule, TrainConfig, accuracy, fit
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
SHIPPED_TEACHER = weights_dir() / DEFAULT_TEACHER

# name: (model, train subset (None: all), baseline epochs (0: load the default teacher), prune settings, recovery epochs)
ROWS = {
    "cnn-l2": ("cnn", None, 0, {"importance": "l2"}, 6),
    "cnn-taylor-global": ("cnn", None, 0, {"importance": "taylor", "scope": "global"}, 6),
    "resnet56-l2-global": ("resnet56", 10000, 4, {"importance": "l2", "scope": "global"}, 2),
    "mobilenetv2-l2-global": ("mobilenetv2", 10000, 4, {"importance": "l2", "scope": "global"}, 2),
}


def baseline(model_name: str, data, epochs: int):
    model = build_model(model_name, data.info)
    if epochs == 0:
        model.load_state_dict(load_file(SHIPPED_TEACHER))
        return model.eval(), 0.0
    t0 = time.perf_counter()
    fit(model, data, TrainConfig(epochs=epochs, lr=0.1, schedule=Schedule.ONECYCLE, augment=None), progress=False)
    return model.eval(), time.perf_counter() - t0


def run_row(name: str, data, workdir: Path, runs: int, repeats: int) -> dict:
    model_name, _, epochs, settings, recovery_epochs = ROWS[name]
    model, train_seconds = baseline(model_name, data, epochs)
    target = load_target("host")
    ctx = RunContext(out_dir=workdir, target=target, data=data, cache_dir=workdir / "cache", progress=False,
                     stage_dir=workdir / name)
    ctx.stage_dir.mkdir(parents=True)
    stage = PruneStage(reduction=0.5, metric="macs", **settings,
                       recovery=RecoveryConfig(train=TrainConfig(epochs=recovery_epochs, lr=0.01,
                                                                 schedule=Schedule.COSINE, augment=None)))
    t0 = time.perf_counter()
    stage_row = ReportRow()
    pruned = stage.apply(Handoff(model=copy.deepcopy(model)), ctx, stage_row).model
    prune_seconds = time.perf_counter() - t0
    step = stage_row.details["steps"][-1]
    baseline = export_onnx(model, ctx.input_shape)
    with HostComparer(baseline, ctx.input_shape, threads=target.threads, runs=runs) as timer:
        exported = timer.save(export_onnx(pruned, ctx.input_shape), "pruned")
        (b1, b64), rounds = timer.compare_rounds(exported, (1, 64), repeats)
        parity = check_parity(pruned, exported, make_loader(ctx.data.report.unsealed(), ctx.data.info, batch_size=256, train=False), threads=ctx.host_threads)
    row = {"name": name, "model": model_name, "importance": stage.importance.value, "scope": stage.scope.value,
           "round_to": stage_row.details["round_to"], "train_images": len(data.train), "baseline_epochs": epochs,
           "recovery_epochs": recovery_epochs,
           "macs_before": count_macs(model, ctx.input_shape), "macs_after": count_macs(pruned, ctx.input_shape),
           "params_before": count_params(model), "params_after": count_params(pruned),
           "accuracy_before": accuracy(model, make_loader(ctx.data.report.unsealed(), ctx.data.info, batch_size=256, train=False)), "accuracy_pruned": step["accuracy_pruned"],
           "accuracy_recovered": step["accuracy_recovered"], "onnx_accuracy": parity.accuracy,
           "onnx_max_abs_diff": parity.max_abs_diff, "onnx_top1_agreement": parity.top1_agreement,
           "latency_speedup_b1": b1.speedup, "latency_speedup_b64": b64.speedup,
           "latency_ms": {"b1": b1.to_dict(), "b64": b64.to_dict()},
           "speedup_rounds": {"b1": [round(r[0].speedup, 3) for r in rounds],
                              "b64": [round(r[1].speedup, 3) for r in rounds]},
           "channels_after": [m.out_channels for m in pruned.modules() if hasattr(m, "out_channels")],
           "baseline_train_seconds": round(train_seconds, 1), "prune_stage_seconds": round(prune_seconds, 1)}
    print(f"{name:24} MACs {row['macs_after'] / row['macs_before']:.3f}  acc {row['accuracy_before']:.4f} → "
          f"{row['accuracy_pruned']:.4f} → {row['accuracy_recovered']:.4f}  speed-up b1 {b1.speedup:.2f}× "
          f"b64 {b64.speedup:.2f}×  ({prune_seconds:.0f} s)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(ROWS), help="run only these rows (merged into the file)")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per model and batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (new sessions); the median is kept")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or ROWS:
            data = load_data(DataSpec(train_subset=ROWS[name][1]))
            rows.append(run_row(name, data, Path(tmp), args.runs, args.repeats))
    path = RESULTS / "prune_fashion_mnist.json"
    if args.only and path.exists():
        old = json.loads(path.read_text())
        rows = [r for r in old["rows"] if r["name"] not in {r["name"] for r in rows}] + rows
    write_json(path, {"reduction_goal": {"metric": "macs", "reduction": 0.5}, "rows": rows,
                      "host": load_target("host").description, "versions": library_versions()})


if __name__ == "__main__":
    sys.exit(main())
