"""A compress run driven by a budget instead of a recipe (``edgekd.compress(..., budget=...)``).

1. the recipe's teacher stage alone (OUT/search/original): the model the budget is relative to;
2. each student distilled from it (OUT/search/students/NAME), the recipe's distill stage for each;
3. the search (:func:`edgekd.search.driver.search_compression`): candidates.json, finalists.json in OUT/search,
   resumable; each candidate is a plan of stages (:mod:`edgekd.search.plans`) built by :func:`edgekd.plan.build`;
4. the pick's plan written as OUT/search/recipe.yaml (rerun with --recipe to rebuild the model);
5. that recipe run into OUT; its report gains a `search` section.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgekd import console
from edgekd.atomic import write_text
from edgekd.data import DataBundle, load_data
from edgekd.pipeline import MANIFEST, RunResult, open_run_folder, run_pipeline, seed_run
from edgekd.recipe import Recipe, load_recipe
from edgekd.report import write_report
from edgekd.search import driver
from edgekd.search.plans import picked_recipe, recipe_yaml, student_stages
from edgekd.search.space import ORIGINAL, Budget
from edgekd.stages.base import Stage
from edgekd.targets import TargetProfile

USED = {"teacher", "distill", "export", "benchmark"}  # the recipe stages a budget run takes; the search picks the rest


def compress_within_budget(plan: Recipe, target: TargetProfile, out: Path, budget: Budget, *,
                           data: DataBundle | None, user_model, resume: bool, overwrite: bool, cache_dir: Path,
                           trust_checkpoint: bool, progress: bool, metric=None, loss=None) -> RunResult:
    """Search ``budget`` from the plan's teacher (and its students), then run the picked recipe into ``out``."""
    open_run_folder(out, resume=resume, overwrite=overwrite)  # refuse an occupied folder before searching
    if any(s.stage not in USED for s in plan.stages):
        console.info(f"search: the budget chooses the stages; the recipe's "
                     f"{', '.join(s.stage for s in plan.stages if s.stage not in USED)} stages are not used")
    bundle = data if data is not None else load_data(plan.data)
    common = dict(data=bundle, user_model=user_model, cache_dir=cache_dir, trust_checkpoint=trust_checkpoint,
                  progress=progress, metric=metric, loss=loss)

    def trained(stages: tuple[Stage, ...], folder: Path) -> nn.Module:
        recipe = Recipe(name=f"{plan.name}-{folder.name}", data=plan.data, stages=stages)
        return run_pipeline(recipe, target, folder, resume=resume, overwrite=True, report=False, **common).handoff.model

    distills = student_stages(plan, budget, user_model=user_model)
    runs = {ORIGINAL: out / "search" / "original",
            **{name: out / "search" / "students" / folder_name(name) for name in distills}}
    original = trained(plan.stages[:1], runs[ORIGINAL])
    students = {name: trained((plan.stages[0], stage), runs[name]) for name, stage in distills.items()}
    console.info(f"search: {budget.describe()} on {target.name}"
                 + (f", from the model and {', '.join(students)}" if students else ""))
    outcome = driver.search_compression(original, bundle, target, budget, folder=out / "search", students=students,
                                        resume=resume, progress=progress, metric=metric, loss=loss,
                                        cache_dir=cache_dir)
    recipe_path = out / "search" / "recipe.yaml"
    write_text(recipe_path, recipe_yaml(picked_recipe(plan, outcome.pick.candidate, budget, distills)))
    console.info(f"search: picked {outcome.pick.key} (plan {outcome.pick.plan}); its recipe is {recipe_path}")
    if not (resume and (out / MANIFEST).exists()):  # the teacher and student trained above are not trained again
        seed_run(runs[outcome.pick.base], out, 2 if outcome.pick.base in distills else 1)
    run = run_pipeline(load_recipe(recipe_path), target, out, resume=True, overwrite=False, **common)
    report = {**run.report, "search": {**outcome.to_dict(), "recipe": "search/recipe.yaml",
                                       "report_split": graded_pick(run.report)}}
    write_report(out, report)
    return RunResult(report=report, handoff=run.handoff)


def graded_pick(report: dict) -> dict:
    """The pick and the original on the report split, read once the pick was final: the drop a user can trust."""
    original, pick = report["stages"][0]["accuracy"], report["summary"]["accuracy"]
    per_unit = report.get("metric", {}).get("points_per_unit", 100.0)
    return {"original_accuracy": original, "pick_accuracy": pick, "drop_points": round(per_unit * (original - pick), 4),
            "note": "the search chose on the selection split; these figures were read after its pick was final"}


def folder_name(name: str) -> str:
    """A student's name as one folder name (import paths and derived names hold ':', '/', spaces)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
