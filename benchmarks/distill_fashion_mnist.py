"""Distillation methods compared on Fashion-MNIST: the same student, epochs and data for every row.

Teacher: the default teacher from teacher_fashion_mnist.py (its weights in results/).
Rows: student alone, KD, FitNets, LIT, RKD, AT, DKD, NKD and combinations; the teacher-free and
online families (label smoothing, Tf-KD_reg, USKD, BYOT, DML, BD-KD, Tf-KD_self, label refinery),
each over several seeds (mean ± std of test accuracy, mean epoch time); a second, smaller student
for alone vs KD; and the KD epoch cost against a student-alone epoch, measured alternately in one
run. Generation methods (tfkd-self, label-refinery) train every generation for the full epochs:
their ``total_epochs`` is (generations + 1) × epochs.

Run: .venv/bin/python benchmarks/distill_fashion_mnist.py [--epochs 8] [--train-subset 20000]
Writes benchmarks/results/distill_fashion_mnist.json. ``--only M ... --section long_budget_rows`` merges rows
of another budget; ``--kd-sweep`` sweeps Hinton KD's settings; ``--lit-depth TEACHER STUDENT`` trains a teacher
and compares alone, KD and LIT (the authors' joint phase, and block training alone) on a shallower student.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.distill import LossSpec
from edgekd.distill.cache import with_cached_logits
from edgekd.distill.objective import DistillObjective
from edgekd.measure import count_params
from edgekd.models.loading import build_model
from edgekd.models.shipped import DEFAULT_TEACHER, weights_dir
from edgekd.stages.base import Handoff, ReportRow
from edgekd.stages.distill import DistillStage
from edgekd.targets import load_target
from edgekd.train import AugmentConfig, TrainConfig, accuracy, fit
from edgekd.versions import library_versions

RESULTS = Path(__file__).parent / "results"
SHIPPED_TEACHER = weights_dir() / DEFAULT_TEACHER
PAIRS = [["block2", "block2"], ["block3", "block3"]]


def methods(epochs: int) -> dict[str, list[dict]]:
    """Loss lists per row; two-phase methods spend one of the epochs on their first phase."""
    return {
        "alone": [],
        "kd": [{"name": "kd"}],
        "fitnets": [{"name": "fitnets", "pairs": [["block2", "block2"]], "hint_epochs": 1}, {"name": "kd"}],
        "lit": [{"name": "lit", "epochs": 1}, {"name": "kd"}],
        "rkd": [{"name": "rkd", "student_layer": "block3", "teacher_layer": "block3"}],
        "at": [{"name": "at", "pairs": PAIRS}],
        "dkd": [{"name": "dkd"}],
        "kd+at": [{"name": "kd"}, {"name": "at", "pairs": PAIRS}],
        "dkd+rkd": [{"name": "dkd"}, {"name": "rkd", "student_layer": "block3", "teacher_layer": "block3"}],
        "nkd": [{"name": "nkd"}],
        "crd": [{"name": "crd", "weight": 0.8, "negatives": 4096}],  # CE + 0.8·CRD; 4096 negatives (paper 16384)
        "label-smoothing": [{"name": "label-smoothing", "epsilon": 0.1}],
        "tfkd-reg": [{"name": "tfkd-reg", "multiplier": 10}],  # the authors' CIFAR-100 strength for K = 10
        "uskd": [{"name": "uskd"}],
        "byot": [{"name": "byot"}],
        "dml": [{"name": "dml", "peers": 1}],
        "bdkd": [{"name": "bdkd"}],  # teacher: none, so the online teacher is a fresh cnn-small (CPU budget)
        "tfkd-self": [{"name": "generations", "count": 1}, {"name": "kd", "temperature": 6, "alpha": 0.95}],
        "label-refinery": [{"name": "generations", "count": 2}, {"name": "kd", "temperature": 1, "alpha": 1.0}],
    }


TEACHER_FREE = {"label-smoothing", "tfkd-reg", "uskd", "byot", "dml", "bdkd", "tfkd-self", "label-refinery"}
"""Rows whose distill stage has ``teacher: none``."""


def total_epochs(losses: list[dict], epochs: int) -> int:
    generations = next((spec["count"] for spec in losses if spec["name"] == "generations"), None)
    return epochs * (generations + 1) if generations else epochs


def first_phase_epochs(losses: list[dict]) -> int:
    return sum(spec.get("hint_epochs", 0) + (spec.get("epochs", 0) if spec["name"] == "lit" else 0) for spec in losses)


def student_stage(student: str, losses: list[dict], config: TrainConfig, teacher: str) -> DistillStage:
    """``cnn@W`` is the teacher's family at width W (derived); other names are zoo models."""
    if student.startswith("cnn@"):
        return DistillStage(derive={"width": float(student[4:])}, losses=losses or [{"name": "kd"}], train=config,
                            teacher=teacher)
    return DistillStage(student=student, losses=losses or [{"name": "kd"}], train=config, teacher=teacher)


def reuse_generation_zero(losses: list[dict], stage_dir: Path, earlier) -> None:
    """Generation 0 (the student on labels alone, same seed and settings) is trained once per seed and run:
    a later generation row starts from the finished checkpoint of an earlier one."""
    if any(spec["name"] == "generations" for spec in losses):
        for found in earlier:
            if found.parent != stage_dir:
                shutil.copy(found, stage_dir / found.name)
                return


def run_row(method: str, losses: list[dict], student_name: str, teacher, data, seed: int, epochs: int, workdir: Path,
            augment: AugmentConfig | None = None, tag: str | None = None):
    config = TrainConfig(epochs=epochs - first_phase_epochs(losses), lr=0.1, augment=augment, seed=seed)
    stage = student_stage(student_name, losses, config, "none" if method in TEACHER_FREE else "previous")
    ctx = RunContext(out_dir=workdir, target=load_target("host"), data=data, cache_dir=workdir / "cache",
                     progress=False, stage_dir=workdir / f"{tag or method}-{student_name}-{seed}")
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    reuse_generation_zero(losses, ctx.stage_dir, workdir.glob(f"*-{student_name}-{seed}/train-generation-0.pt"))
    given = Handoff(model=teacher, teacher=teacher, model_spec="cnn")  # "cnn@W" derives from the teacher's family
    t0 = time.perf_counter()
    if method == "alone":
        student = stage.make_student(given, ctx)
        history = fit(student, data, config, progress=False).history
    else:
        row = ReportRow()
        student = stage.apply(given, ctx, row).model
        history = [h for phase in row.details["history"].values() for h in phase]
    seconds = time.perf_counter() - t0
    val = accuracy(student, make_loader(data.report.unsealed(), data.info, batch_size=512, train=False))
    return {"accuracy": val, "seconds": seconds, "epoch_seconds": statistics.mean(h["seconds"] for h in history),
            "params": count_params(student)}


def seed_summary(runs: list[dict]) -> dict:
    """A row's accuracy over its seeds (each seed's, mean, population std) and its mean epoch time."""
    accs = [r["accuracy"] for r in runs]
    return {"accuracies": accs, "accuracy_mean": statistics.mean(accs), "accuracy_std": statistics.pstdev(accs),
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs)}


def kd_sweep_settings(epochs: int) -> dict[str, tuple[list[dict], int, AugmentConfig | None]]:
    """Hinton KD on the small student: temperature, α, epochs and augmentation, each against "alone" of the same
    epochs and augmentation (label → losses, epochs, augmentation)."""
    settings = {"alone": ([], epochs, None)}
    for t in (1, 2, 3, 4, 8):
        for alpha in (0.5, 0.9, 1.0):
            settings[f"kd T={t} a={alpha}"] = ([{"name": "kd", "temperature": t, "alpha": alpha}], epochs, None)
    for label, (losses, e, _) in list(settings.items()):
        if label in ("alone", "kd T=4 a=0.9", "kd T=2 a=0.9"):
            settings[f"{label} x2 epochs"] = (losses, 2 * epochs, None)
            settings[f"{label} augment"] = (losses, epochs, AugmentConfig())
    return settings


def kd_sweep(student: str, teacher, data, seeds: list[int], epochs: int, workdir: Path, only: list[str] | None) -> list:
    rows = []
    for label, (losses, e, augment) in kd_sweep_settings(epochs).items():
        if only and label not in only:
            continue
        runs = [run_row("alone" if not losses else "kd", losses, student, teacher, data, seed, e, workdir, augment,
                        tag=label.replace(" ", "_")) for seed in seeds]
        rows.append({"setting": label, "student": student, "losses": losses, "epochs": e,
                     "augmentation": augment.model_dump() if augment else None, "seeds": seeds,
                     **seed_summary(runs), "torch_threads": torch.get_num_threads()})
        print(f"{label:24} {rows[-1]['accuracy_mean']:.4f} ± {rows[-1]['accuracy_std']:.4f}  "
              f"{rows[-1]['accuracies']}", flush=True)
    return rows


def lit_depth_settings(epochs: int) -> dict[str, list[dict]]:
    """LIT's claim is about depth: a student of the teacher's width with fewer blocks per stage. Rows: the student
    alone, Hinton KD, LIT as the authors run it (half the epochs in the joint phase, β = 0.75, the teacher's stem and
    classifier inherited; then KD) and LIT's block training alone (no KD in the first phase, nothing inherited)."""
    half = max(1, epochs // 2)
    return {"alone": [], "kd": [{"name": "kd"}],
            "lit": [{"name": "lit", "epochs": half}, {"name": "kd"}],
            "lit-blocks-only": [{"name": "lit", "epochs": half, "kd_weight": 0.0, "inherit": False}, {"name": "kd"}]}


def lit_depth_study(teacher_name: str, student_name: str, data, seeds: list[int], epochs: int, workdir: Path) -> dict:
    """Train ``teacher_name`` (seed 0, the same images, twice the students' epochs), then each LIT-study row on
    ``student_name``."""
    config = TrainConfig(epochs=2 * epochs, lr=0.1, augment=None, seed=0)
    teacher = build_model(teacher_name, data.info)
    t0 = time.perf_counter()
    fit(teacher, data, config, progress=False)
    teacher.eval()
    val = make_loader(data.report.unsealed(), data.info, batch_size=512, train=False)
    trained = {"model": teacher_name, "params": count_params(teacher), "accuracy": accuracy(teacher, val),
               "epochs": config.epochs, "seconds": time.perf_counter() - t0}
    study = {"teacher": trained, "epochs": epochs, "train_images": len(data.train), "rows": []}
    print(f"teacher {teacher_name}: {trained['accuracy']:.4f}", flush=True)
    for method, losses in lit_depth_settings(epochs).items():
        runs = [run_row("alone" if not losses else method, losses, student_name, teacher, data, seed, epochs, workdir,
                        tag=f"litdepth-{method}") for seed in seeds]
        row = {"method": method, "student": student_name, "params": runs[0]["params"], "losses": losses,
               "seeds": seeds, **seed_summary(runs)}
        study["rows"].append(row)
        print(f"{method:16} {row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f} {row['accuracies']}", flush=True)
    return study


def kd_epoch_cost(student_name: str, teacher, data, workdir: Path, repeats: int = 3) -> dict:
    """Alternate student-alone and KD epochs (teacher logits cached) and compare median times."""
    cached = with_cached_logits(teacher, data, workdir / "cache")
    times = {"alone": [], "kd": [], "kd_live_teacher": []}
    config = TrainConfig(epochs=1, lr=0.05, augment=None)
    for _ in range(repeats):
        for kind in times:
            student = build_model(student_name, data.info)
            if kind == "alone":
                result = fit(student, data, config, progress=False)
            else:
                objective = DistillObjective(teacher, [(1.0, LossSpec(name="kd").build())], label_weight=0.0)
                result = fit(student, cached if kind == "kd" else data, config, objective=objective, progress=False)
            times[kind].append(result.history[0]["seconds"])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"alone_epoch_seconds": med["alone"], "kd_epoch_seconds": med["kd"],
            "kd_live_teacher_epoch_seconds": med["kd_live_teacher"],
            "kd_epoch_cost_ratio": med["kd"] / med["alone"],
            "kd_live_teacher_cost_ratio": med["kd_live_teacher"] / med["alone"], "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-subset", type=int, default=20000, help="0 for all 60,000 images")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--student", default="cnn-small")
    parser.add_argument("--small-student", default="cnn-tiny")
    parser.add_argument("--only", nargs="*", help="run only these methods")
    parser.add_argument("--results", type=Path, default=RESULTS / "distill_fashion_mnist.json",
                        help="results file (rows of --only runs are merged into it)")
    parser.add_argument("--headline", action="store_true",
                        help="add full-data rows (--only methods, --student) to the existing results file")
    parser.add_argument("--section", default="rows",
                        help="the results file's list that --only rows are merged into (e.g. long_budget_rows)")
    parser.add_argument("--kd-sweep", nargs="*",
                        help="sweep Hinton KD's settings on --small-student (optionally only these labels); "
                             "merged into the results file as kd_sweep")
    parser.add_argument("--lit-depth", nargs=2, metavar=("TEACHER", "STUDENT"),
                        help="LIT's depth study (e.g. resnet20 resnet8): merged into the results file as lit_depth")
    args = parser.parse_args()

    data = load_data(DataSpec(train_subset=args.train_subset or None))
    teacher = build_model("cnn", data.info)
    teacher.load_state_dict(load_file(SHIPPED_TEACHER))
    teacher.eval()
    teacher_acc = accuracy(teacher, make_loader(data.report.unsealed(), data.info, batch_size=512, train=False))
    if args.lit_depth:
        with tempfile.TemporaryDirectory() as tmp:
            study = lit_depth_study(*args.lit_depth, data, args.seeds, args.epochs, Path(tmp))
        report = json.loads(args.results.read_text())
        report["lit_depth"] = study
        write_json(args.results, report)
        return
    if args.kd_sweep is not None:
        with tempfile.TemporaryDirectory() as tmp:
            rows = kd_sweep(args.small_student, teacher, data, args.seeds, args.epochs, Path(tmp), args.kd_sweep)
        report = json.loads(args.results.read_text())
        key = lambda r: (r["setting"], r["student"], tuple(r["seeds"]))  # noqa: E731
        done = {key(r) for r in rows}
        report["kd_sweep"] = [r for r in report.get("kd_sweep", []) if key(r) not in done] + rows
        write_json(args.results, report)
        return
    plan = [(m, l, args.student) for m, l in methods(args.epochs).items()]
    if not args.headline and args.section == "rows":  # the small student: alone and kd in the main table only
        plan += [(m, l, args.small_student) for m, l in methods(args.epochs).items() if m in ("alone", "kd")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, losses, student in plan:
            if args.only and method not in args.only:
                continue
            runs = [run_row(method, losses, student, teacher, data, seed, args.epochs, Path(tmp)) for seed in args.seeds]
            row = {"method": method, "student": student, "params": runs[0]["params"], "seeds": args.seeds,
                   **seed_summary(runs), "row_seconds": sum(r["seconds"] for r in runs), "epochs": args.epochs,
                   "total_epochs": total_epochs(losses, args.epochs), "train_images": len(data.train),
                   "torch_threads": torch.get_num_threads()}
            rows.append(row)
            print(f"{method:8} {student:10} {row['params']:7d} params  {row['accuracy_mean']:.4f} ± "
                  f"{row['accuracy_std']:.4f}  {row['epoch_seconds']:.1f} s/epoch", flush=True)
        merge = args.headline or bool(args.only)
        cost = None if merge else kd_epoch_cost(args.student, teacher, data, Path(tmp))
    path = args.results
    if args.headline:
        report = json.loads(path.read_text())
        report["full_data_rows"] = rows
    elif merge:  # --only: add or replace these rows in the existing results
        report = json.loads(path.read_text())
        new = {(r["method"], r["student"]) for r in rows}
        report[args.section] = [r for r in report.get(args.section, []) if (r["method"], r["student"]) not in new] + rows
    else:
        report = {"teacher": {"model": "cnn", "params": count_params(teacher), "accuracy": teacher_acc},
                  "epochs": args.epochs, "train_images": len(data.train), "val_images": len(data.report),
                  "augmentation": None, "rows": rows, **cost, "versions": library_versions()}
        print(f"KD epoch cost ratio {cost['kd_epoch_cost_ratio']:.2f} (cached teacher logits), "
              f"{cost['kd_live_teacher_cost_ratio']:.2f} with a live teacher")
    write_json(path, report)


if __name__ == "__main__":
    sys.exit(main())
