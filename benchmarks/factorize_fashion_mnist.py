"""Low-rank factorization of the default teacher at 40% fewer MACs: selection methods compared.

Every row runs the pipeline's own ``factorize`` stage on the default teacher (its weights in
results/) with the same MAC target; ``accuracy_factorized`` is before recovery (the number
selection methods are judged by), ``accuracy_recovered`` after KD fine-tuning from the
unfactorized model on all 60,000 training images. Latency: the original and factorized models
exported to ONNX and timed side by side with ONNX Runtime on this machine (medians), in
``--repeats`` rounds with fresh sessions; the median round is kept and all are recorded.
``full_rank_max_rel_error``: every factorizable layer of the teacher decomposed at full rank,
its output on real test images compared with the original layer's.

Run: .venv/bin/python benchmarks/factorize_fashion_mnist.py [--only greedy-spatial-svd ...]
Writes benchmarks/results/factorize_fashion_mnist.json (``--only`` merges into it).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.distill.recovery import RecoveryConfig
from edgekd.factorize.decompose import decompose
from edgekd.factorize.layers import Method, full_rank, why_not
from edgekd.models.loading import build_model
from edgekd.models.shipped import DEFAULT_TEACHER, weights_dir
from edgekd.models.tracing import trace_layers
from edgekd.onnx_export import check_parity, export_onnx
from edgekd.runtime.compare import HostComparer
from edgekd.stages.base import Handoff, ReportRow
from edgekd.stages.factorize import FactorizeStage
from edgekd.targets import load_target
from edgekd.train import Schedule, TrainConfig, accuracy
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
SHIPPED_TEACHER = weights_dir() / DEFAULT_TEACHER
ROWS = {  # name: (selection, conv method)
    "energy-spatial-svd": ("energy", "spatial-svd"),
    "uniform-spatial-svd": ("uniform", "spatial-svd"),
    "greedy-spatial-svd": ("greedy", "spatial-svd"),
    "greedy-tucker2": ("greedy", "tucker2"),
}


def teacher(data):
    model = build_model("cnn", data.info)
    model.load_state_dict(load_file(SHIPPED_TEACHER))
    return model.eval()


@torch.no_grad()
def full_rank_errors(model, data) -> dict[str, float]:
    """Max over layers of ‖decomposed(x) − layer(x)‖ / ‖layer(x)‖ on real inputs, per method."""
    images, _ = next(iter(make_loader(data.report.unsealed(), data.info, batch_size=256, train=False)))
    inputs = {}

    def keep_input(name):
        def hook(module, args, output):
            inputs.setdefault(name, args[0])
        return hook

    hooks = [m.register_forward_hook(keep_input(n))
             for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    model(images)
    for h in hooks:
        h.remove()
    errors = {}
    for method in (Method.SVD, Method.SPATIAL_SVD, Method.TUCKER2):
        worst = 0.0
        for layer in trace_layers(model, images[:1]):
            is_linear = isinstance(layer.module, torch.nn.Linear)
            if is_linear != (method is Method.SVD) or why_not(layer, method, ()):
                continue
            x = inputs[layer.name]
            rank = full_rank(layer, method)
            expected = layer.module(x)
            worst = max(worst, float((decompose(layer, method, rank)(x) - expected).norm() / expected.norm()))
        errors[method.value] = worst
    return errors


def run_row(name: str, model, data, workdir: Path, epochs: int, runs: int, repeats: int) -> dict:
    selection, conv = ROWS[name]
    ctx = RunContext(out_dir=workdir, target=load_target("host"), data=data, cache_dir=workdir / "cache",
                     progress=False, stage_dir=workdir / name)
    ctx.stage_dir.mkdir(parents=True)
    stage = FactorizeStage(selection=selection, conv=conv, reduction=0.4,
                           recovery=RecoveryConfig(train=TrainConfig(epochs=epochs, lr=0.01, schedule=Schedule.COSINE,
                                                                     augment=None)))
    stage_row = ReportRow()
    factorized = stage.apply(Handoff(model=copy.deepcopy(model)), ctx, stage_row).model
    d = stage_row.details
    baseline = export_onnx(model, ctx.input_shape)
    with HostComparer(baseline, ctx.input_shape, threads=ctx.target.threads, runs=runs) as timer:
        exported = timer.save(export_onnx(factorized, ctx.input_shape), "factorized")
        (b1, b64), rounds = timer.compare_rounds(exported, (1, 64), repeats)
        parity = check_parity(factorized, exported, make_loader(ctx.data.report.unsealed(), ctx.data.info, batch_size=256, train=False),
                              threads=ctx.host_threads)
    row = {"name": name, "model": "cnn", "selection": selection, "conv_method": conv,
           "macs_before": d["macs_before"], "macs_after": d["macs_after"],
           "accuracy_before": d["accuracy_before"], "accuracy_factorized": d["accuracy_factorized"],
           "accuracy_recovered": d["accuracy_recovered"], "recovery_epochs": epochs,
           "onnx_accuracy": parity.accuracy, "onnx_top1_agreement": parity.top1_agreement,
           "latency_speedup_b1": b1.speedup, "latency_speedup_b64": b64.speedup,
           "latency_ms": {"b1": b1.to_dict(), "b64": b64.to_dict()},
           "speedup_rounds": {"b1": [round(r[0].speedup, 3) for r in rounds],
                              "b64": [round(r[1].speedup, 3) for r in rounds]}, "layers": d["layers"]}
    print(f"{name:22} MACs {d['macs_after'] / d['macs_before']:.3f}  acc {d['accuracy_before']:.4f} → "
          f"{d['accuracy_factorized']:.4f} → {d['accuracy_recovered']:.4f}  speed-up b1 {b1.speedup:.2f}× "
          f"b64 {b64.speedup:.2f}×", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(ROWS))
    parser.add_argument("--epochs", type=int, default=4, help="recovery epochs")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (new sessions); the median is kept")
    args = parser.parse_args()
    data = load_data(DataSpec())
    model = teacher(data)
    errors = full_rank_errors(model, data)
    print("full-rank max relative error:", errors, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_row(n, model, data, Path(tmp), args.epochs, args.runs, args.repeats) for n in args.only or ROWS]
    path = RESULTS / "factorize_fashion_mnist.json"
    if args.only and path.exists():
        old = json.loads(path.read_text())
        rows = [r for r in old["rows"] if r["name"] not in {r["name"] for r in rows}] + rows
    write_json(path, {"target": {"metric": "macs", "reduction": 0.4}, "full_rank_max_rel_error": errors,
                      "teacher_accuracy": accuracy(model, make_loader(data.report.unsealed(), data.info, batch_size=512, train=False)),
                      "rows": rows, "host": load_target("host").description, "versions": library_versions()})


if __name__ == "__main__":
    sys.exit(main())
