"""Segmentation end to end on the generated shapes set, judged by mIoU: teacher → distilled student → pruned → int8.

Data: ``DataSpec(source="shapes")`` (32-px images, 4 classes per pixel: background, square, circle,
triangle), ``--train`` images of which edgekd holds a seeded 10% out as the selection split (every
choice), and ``--val`` images of another seed as the report split (every mIoU below, read once at the end).
Models: the zoo's ``unet-small`` teacher (width 16) and ``unet-tiny`` student (width 8).

Rows:

* ``teacher``: unet-small trained on labels (per-pixel cross-entropy).
* ``distillation``: per seed, unet-tiny trained alone (the same training settings) against unet-tiny
  distilled from the teacher with ``outputs`` (KL per pixel over the class axis, T = 2, α = 0.9):
  mean, std and every seed's mIoU, so the gain is read against the seeds' spread.
* ``chain``: the seed-0 distilled student through ``Prune(0.3)`` (KD recovery from the student) and
  ``Quantize`` (int8 required) for the host target: each stage's mIoU from the run's report.
* ``latency``: teacher, student, pruned and int8 ONNX models timed side by side on this machine with ONNX
  Runtime (median of ``--repeats`` rounds of 200 runs; speed-ups against the teacher are medians of the
  per-round ratios).

Every mIoU is ONNX Runtime's, through ``edgekd.judge``, on the report split.

Run: .venv/bin/python benchmarks/segmentation.py [--seeds 0 1 2] [--train 2000] [--val 500]
Writes benchmarks/results/segmentation.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import edgekd
from edgekd.atomic import write_json
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.judge import judge
from edgekd.measure import count_macs, count_params
from edgekd.models.loading import build_model
from edgekd.onnx_export import export_onnx
from edgekd.runtime.onnxruntime import compare_latency
from edgekd.targets import load_target
from edgekd.train import TrainConfig, fit
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
TEACHER_TRAINING = TrainConfig(epochs=15, optimizer="adamw", lr=0.005, weight_decay=1e-4, batch_size=64,
                               augment=None, seed=0)
STUDENT_TRAINING = TEACHER_TRAINING.model_copy(update={"epochs": 10})
RECOVERY = {"train": {"epochs": 3, "lr": 0.001, "optimizer": "adamw", "augment": None}}


def miou(model, loader) -> float:
    """The model's mIoU on ``loader`` with ONNX Runtime (a float model is exported first)."""
    if isinstance(model, torch.nn.Module):
        model = export_onnx(model.eval(), tuple(next(iter(loader))[0].shape[1:])).SerializeToString()
    return round(judge(model, loader, "miou"), 4)


def train_teacher(data) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(0)
    teacher = build_model("unet-small", data.info)
    start = time.perf_counter()
    fit(teacher, data, TEACHER_TRAINING, metric="miou", progress=False)
    return teacher.eval(), time.perf_counter() - start


def student_alone(data, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    student = build_model("unet-tiny", data.info)
    fit(student, data, STUDENT_TRAINING.model_copy(update={"seed": seed}), metric="miou", progress=False)
    return student.eval()


def distilled(teacher, data, seed: int, out: Path) -> edgekd.CompressResult:
    torch.manual_seed(seed)
    training = STUDENT_TRAINING.model_copy(update={"seed": seed})
    return edgekd.compress(teacher, data, metric="miou", target="host", out=out, progress=False,
                           stages=[edgekd.Distill(student="unet-tiny", losses=[{"name": "outputs"}], train=training)])


def pruned_and_quantized(student, data, out: Path) -> edgekd.CompressResult:
    torch.manual_seed(0)
    return edgekd.compress(student, data, metric="miou", target="host", out=out, progress=False,
                           stages=[edgekd.Prune(reduction=0.3, round_to=4, sparsity_2_4=False, recovery=RECOVERY),
                                   edgekd.Quantize(require_int8=True)])


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4),
            "runs": values}


def stage_miou(result: edgekd.CompressResult, name: str) -> float:
    return round(next(s for s in result.report["stages"] if s["name"] == name)["accuracy"], 4)


def side_by_side(paths: dict[str, Path], shape, threads: int, repeats: int, batch: int) -> dict:
    """Median ms per model at ``batch`` over ``repeats`` rounds, and each model's speed-up over the first
    (median of per-round ratios, every round's kept)."""
    names = list(paths)
    rounds = [[r.median_ms for r in compare_latency(list(paths.values()), shape, batch, threads=threads, runs=200)]
              for _ in range(repeats)]
    return {name: {"ms": round(statistics.median(r[i] for r in rounds), 4),
                   "speedup_vs_teacher": round(statistics.median(r[0] / r[i] for r in rounds), 3),
                   "speedup_rounds": [round(r[0] / r[i], 3) for r in rounds]}
            for i, name in enumerate(names)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = load_data(DataSpec(source="shapes", train_subset=args.train, val_subset=args.val))
    report = make_loader(data.report.unsealed(), data.info, batch_size=200, train=False)
    shape = (data.info.channels, *data.info.image_size)
    teacher, teacher_seconds = train_teacher(data)
    print(f"teacher mIoU {miou(teacher, report)} ({teacher_seconds:.0f} s)", flush=True)
    alone, kd, chain = [], [], None
    with tempfile.TemporaryDirectory(prefix="edgekd-seg-") as tmp:
        for seed in args.seeds:
            alone.append(miou(student_alone(data, seed), report))
            run = distilled(teacher, data, seed, Path(tmp) / f"kd-{seed}")
            kd.append(round(run.accuracy, 4))
            print(f"seed {seed}: alone {alone[-1]}, outputs KD {kd[-1]}", flush=True)
            if chain is None:
                student = run.model
                chain = pruned_and_quantized(student, data, Path(tmp) / "chain")
        folder = Path(tmp)
        models = {"teacher": teacher, "student": student, "pruned": chain.model}
        paths = {}
        for name, model in models.items():
            paths[name] = folder / f"{name}.onnx"
            paths[name].write_bytes(export_onnx(model, shape).SerializeToString())
        paths["int8"] = chain.onnx_path
        threads = load_target("host").threads
        latency = {f"batch_{b}": side_by_side(paths, shape, threads, args.repeats, b) for b in (1, 64)}
        sizes = {name: {"params": count_params(m), "macs": count_macs(m, shape)} for name, m in models.items()}
        quantize = next(s for s in chain.report["stages"] if s["name"] == "quantize")["details"]
        result = {
            "dataset": "shapes (generated, 32 px, 4 classes per pixel)", "metric": "miou",
            "splits": data.splits,
            "teacher": {"model": "unet-small", "miou": miou(teacher, report), "train_seconds": round(teacher_seconds),
                        "training": TEACHER_TRAINING.model_dump(mode="json"), **sizes["teacher"]},
            "distillation": {"student": "unet-tiny", "seeds": args.seeds,
                             "training": STUDENT_TRAINING.model_dump(mode="json"),
                             "alone": spread(alone), "outputs_kd": spread(kd),
                             "gain_points": round(100 * (statistics.mean(kd) - statistics.mean(alone)), 2)},
            "chain": {"seed": args.seeds[0],
                      "distilled_student": {"miou": kd[0], **sizes["student"]},
                      "pruned": {"reduction": 0.3, "miou": stage_miou(chain, "prune"), **sizes["pruned"]},
                      "int8": {"miou": round(chain.accuracy, 4), "drop_points": quantize.get("drop_points"),
                               "shipped": quantize.get("shipped")}},
            "latency": {"kind": f"measured side by side on {load_target('host').description}, ONNX Runtime, "
                                f"median of {args.repeats} rounds of 200 runs", **latency},
            "versions": library_versions()}
    write_json(RESULTS / "segmentation.json", result)
    print(f"wrote {RESULTS / 'segmentation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
