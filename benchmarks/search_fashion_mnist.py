"""Budget-driven search on Fashion-MNIST: the fastest model within 1 point of the teacher, against the default recipe.

For each target (``host``: latency measured here; ``jetson-orin``: estimated from the profile),
``edgekd.compress("cnn", data, weights=TEACHER, budget=Budget(max_accuracy_drop=1.0, batch=64))``
searches from the default teacher edgekd ships (``weights/``, trained without the selection images) and from
the default recipe's student distilled from it (``cnn-small``, the default recipe's distill stage, trained
inside the search and counted in ``search_seconds``). That same student, the one the default recipe would
ship, goes through the default recipe's quantize stage for the same target twice: int8 required
(``default_*``: the default recipe's int8 student the issue compares against) and as the recipe runs
(``default_recipe_ships``: float where int8 does not pay at batch 1 or 64). The search chooses on the selection split (6,000 training images held out, seed 0); everything here
is then scored once with ONNX Runtime on the full test set (the report split); on the host the models
are timed side by side with the pick (``--repeats`` rounds of 200 runs at batch 64; speed-ups are the
median of the per-round ratios, every round's ratio is kept), for Jetson they are estimated. Each seed
repeats the search itself (``Budget(seed=...)``: its proxy split and every fine-tune: proxy, finalists'
and the final recovery) from the same teacher and distilled student, which the first run trains and the
others reuse; the summary gives the median and range over seeds.

Run: .venv/bin/python benchmarks/search_fashion_mnist.py [--targets host jetson-orin] [--seeds 0 1 2] [--repeats 3]
     [--margin-se K]  (runs with a margin are stored and summarized apart: "host, 1-SE margin")
Writes benchmarks/results/search_fashion_mnist.json (each run merged in as it finishes).
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

import onnx
import torch
from safetensors.torch import load_file

import edgekd
from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.estimate import estimate_latency
from edgekd.models.loading import build_model
from edgekd.models.shipped import DEFAULT_TEACHER, weights_dir
from edgekd.onnx_export import export_onnx
from edgekd.recipe import load_recipe
from edgekd.runtime.onnxruntime import compare_latency, evaluate
from edgekd.search.driver import drop_points
from edgekd.stages.base import Handoff, ReportRow
from edgekd.stages.quantize import QuantizeStage
from edgekd.targets import load_target
from edgekd.versions import library_versions

sys.path.insert(0, str(Path(__file__).parent))
from readme_format import search_label  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHIPPED_TEACHER = weights_dir() / DEFAULT_TEACHER
DROP = 1.0


def trained(name: str, weights: Path, data):
    model = build_model(name, data.info)
    model.load_state_dict(load_file(weights))
    return model.eval()


def default_student(student, data, target: str, folder: Path) -> tuple[Path, Path, str]:
    """The default recipe's student on ``target`` in int8 (its quantize stage, int8 required), the ONNX
    file that recipe ships (its quantize stage deciding, at its batches 1 and 64, whether int8 pays),
    and which precision that is."""
    shipped, kinds = {}, {}
    for required in (True, False):
        ctx = RunContext(out_dir=folder, target=load_target(target), data=data, cache_dir=folder / "cache",
                         progress=False, stage_dir=folder / f"quantize-{required}")
        ctx.stage_dir.mkdir(parents=True, exist_ok=True)
        out = QuantizeStage(require_int8=required).apply(Handoff(model=student), ctx, ReportRow())
        kinds[required] = "int8" if out.int8 is not None else "float"
        if out.int8 is not None:
            shipped[required] = out.int8.path
        else:
            shipped[required] = folder / "student-float.onnx"
            onnx.save(export_onnx(student, ctx.input_shape), str(shipped[required]))
    return shipped[True], shipped[False], kinds[False]


def side_by_side(paths: list[Path], shape, threads: int, repeats: int) -> tuple[list[float], list[list[float]]]:
    """Each model's median ms at batch 64 over ``repeats`` rounds, and per round the first's time over each
    other's (rounds drift 50% here; models timed in one round agree to ~10%)."""
    rounds = [[r.median_ms for r in compare_latency(paths, shape, 64, threads=threads, runs=200)]
              for _ in range(repeats)]
    return [median([r[i] for r in rounds]) for i in range(len(paths))], [[r[0] / x for x in r] for r in rounds]


def median(values: list[float]) -> float:
    return statistics.median(values)


def run(target: str, seed: int, data, folder: Path, repeats: int, *, reuse: Path | None = None,
        margin_se: float = 0.0) -> dict:
    """One search for ``target`` with ``seed``; ``reuse``: an earlier run whose teacher and distilled student (the
    same for every target and seed) this one starts from instead of training them again."""
    teacher = trained("cnn", SHIPPED_TEACHER, data)
    val = make_loader(data.report.unsealed(), data.info, batch_size=256, train=False)
    recipe = load_recipe("default")
    if reuse is not None:
        for part in ("original", "students"):
            shutil.copytree(reuse / "run" / "search" / part, folder / "run" / "search" / part)
    torch.manual_seed(seed)
    start = time.perf_counter()
    result = edgekd.compress("cnn", data, weights=str(SHIPPED_TEACHER),
                             target=target, out=folder / "run", progress=False, recipe=recipe, resume=reuse is not None,
                             budget=edgekd.Budget(max_accuracy_drop=DROP, batch=64, seed=seed, margin_se=margin_se))
    seconds = time.perf_counter() - start
    student = trained("cnn-small", folder / "run" / "search" / "students" / "cnn-small" / "stages" / "01-distill"
                      / "model.safetensors", data)  # the default recipe's distill stage, from the same teacher
    default, recipe_ships, recipe_ships_kind = default_student(student, data, target, folder / "default")
    shape = (data.info.channels, *data.info.image_size)
    row = {"target": target, "seed": seed, "margin_se": margin_se, "splits": data.splits,
           "pick_margin": result.report["search"].get("pick_margin"),
           "teacher_accuracy": evaluate(export_onnx(teacher, shape).SerializeToString(), val),
           "default_accuracy": evaluate(default, val), "default_recipe_ships": recipe_ships_kind,
           "pick": result.report["search"]["pick"],
           "pick_accuracy": result.accuracy, "search_seconds": round(seconds, 1),
           "student_trained_here": reuse is None,  # else reused from the first run (search_seconds excludes it)
           "pick_selection_accuracy": result.report["summary"]["selection_accuracy"],
           "teacher_selection_accuracy": result.report["search"]["original"]["accuracy"],
           "pick_recipe": (folder / "run" / "search" / "recipe.yaml").read_text(),
           "candidates": result.report["search"]["candidates"], "pareto": result.report["search"]["pareto"],
           "finalists": result.report["search"]["finalists"]}
    profile = load_target(target)
    if target == "host":
        ms, rounds = side_by_side([default, result.onnx_path, recipe_ships], shape, profile.threads, repeats)
        row.update(default_ms_b64=round(ms[0], 4), pick_ms_b64=round(ms[1], 4),
                   speedup_vs_default=round(median([r[1] for r in rounds]), 3),
                   speedup_vs_default_rounds=[round(r[1], 3) for r in rounds],
                   default_recipe_ships_ms_b64=round(ms[2], 4),
                   speedup_vs_what_default_recipe_ships=round(median([r[1] / r[2] for r in rounds]), 3),
                   speedup_vs_what_default_recipe_ships_rounds=[round(r[1] / r[2], 3) for r in rounds],
                   latency=f"measured side by side, median of {repeats} rounds (speed-ups: median of per-round ratios)")
    else:
        default_ms, pick_ms = (estimate_latency(onnx.load(str(p)), profile, 64).ms for p in (default, result.onnx_path))
        row.update(default_ms_b64=round(default_ms, 4), pick_ms_b64=round(pick_ms, 4),
                   speedup_vs_default=round(default_ms / pick_ms, 3), latency="estimated (calibrated roofline)")
    row["drop_points"] = drop_points(row["teacher_accuracy"], row["pick_accuracy"])
    row["within_budget"] = row["drop_points"] <= DROP
    print(json.dumps({k: v for k, v in row.items() if k not in ("candidates", "finalists", "pick_recipe")}),
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="*", default=["host", "jetson-orin"])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--margin-se", type=float, default=0.0,
                        help="keep this many standard errors of a finalist's drop from the budget's edge (runs "
                             "with a margin are kept and summarized apart from those without)")
    args = parser.parse_args(argv)
    path = RESULTS / "search_fashion_mnist.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    rows = {(search_label(r), r["seed"]): r for r in old.get("rows", []) if "seed" in r}  # runs of the seeded kind
    data = load_data(DataSpec(source="fashion-mnist"))
    with tempfile.TemporaryDirectory(prefix="edgekd-search-") as tmp:
        first = None
        for seed in args.seeds:
            for target in args.targets:
                folder = Path(tmp) / f"{target}-{seed}"
                row = run(target, seed, data, folder, args.repeats, reuse=first, margin_se=args.margin_se)
                rows[search_label(row), seed] = row
                first = first or folder
                write_json(path, {"dataset": "fashion-mnist", "max_accuracy_drop_points": DROP, "batch": 64,
                                  "host": load_target("host").description, "rows": list(rows.values()),
                                  "summary": summarize(list(rows.values())), "versions": library_versions()})
    print(f"wrote {path}")
    return 0


SUMMARIZED = ("pick_accuracy", "drop_points", "speedup_vs_default", "speedup_vs_what_default_recipe_ships",
              "search_seconds")


def summarize(rows: list[dict]) -> dict:
    """Per target (and margin): the runs' picks, and the median, min and max of each figure over the seeds."""
    summary = {}
    for label in sorted({search_label(r) for r in rows}):
        runs = [r for r in rows if search_label(r) == label]
        summary[label] = {"runs": len(runs), "seeds": [r["seed"] for r in runs], "picks": [r["pick"] for r in runs],
                           "all_within_budget": all(r["within_budget"] for r in runs)}
        for key in SUMMARIZED:
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                summary[label][key] = {"median": round(median(values), 4), "min": min(values), "max": max(values)}
    return summary


if __name__ == "__main__":
    sys.exit(main())
