"""A compress run driven by a budget instead of a recipe (API layer, like :mod:`edgekd.api`).

Order of work, all in the run folder ``OUT``:

1. The recipe's teacher stage alone (``OUT/search/original``): the model the budget is relative to.
2. The search (:mod:`edgekd.search`): candidates scored into ``OUT/search/candidates.json``,
   finalists into ``OUT/search/finalists.json``; an interrupted search resumes with ``resume``.
3. The pick written as a recipe, ``OUT/search/recipe.yaml``: the teacher stage, prune (if
   any), quantize (if int8), export, benchmark. Rerunning it (``--recipe OUT/search/recipe.yaml``)
   reproduces the model.
4. That recipe run into ``OUT`` as any other; its report gains a ``search`` section (every
   candidate, the Pareto front, each finalist and why it won or lost).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edgekd import console
from edgekd.atomic import write_text
from edgekd.data import DataBundle, load_data
from edgekd.pipeline import RunResult, open_run_folder, run_pipeline
from edgekd.recipe import Recipe, load_recipe
from edgekd.report import write_report
from edgekd.search.driver import search_compression
from edgekd.search.evaluate import Scored
from edgekd.search.space import Budget
from edgekd.stages import STAGES
from edgekd.targets import TargetProfile


def compress_within_budget(plan: Recipe, target: TargetProfile, out: Path, budget: Budget, *,
                           data: DataBundle | None, user_model, resume: bool, overwrite: bool, cache_dir: Path,
                           trust_checkpoint: bool, progress: bool) -> RunResult:
    """Search ``budget`` from the plan's teacher, then run the picked recipe into ``out``."""
    open_run_folder(out, resume=resume, overwrite=overwrite)  # refuse an occupied folder before searching
    if len(plan.stages) > 1:
        console.info(f"search: the budget chooses the stages; the recipe's {', '.join(s.stage for s in plan.stages[1:])} "
                     "stages are not used")
    bundle = data if data is not None else load_data(plan.data)
    common = dict(data=bundle, user_model=user_model, cache_dir=cache_dir, trust_checkpoint=trust_checkpoint,
                  progress=progress)
    teacher_only = Recipe(name=f"{plan.name}-original", data=plan.data, stages=plan.stages[:1])
    original = run_pipeline(teacher_only, target, out / "search" / "original", resume=resume, overwrite=True,
                            **common).handoff.model
    console.info(f"search: {budget.describe()} on {target.name}")
    outcome = search_compression(original, bundle, target, budget, folder=out / "search", resume=resume,
                                 progress=progress)
    recipe_path = out / "search" / "recipe.yaml"
    write_text(recipe_path, recipe_yaml(picked_recipe(plan, outcome.pick, budget)))
    console.info(f"search: picked {outcome.pick.key}; its recipe is {recipe_path}")
    run = run_pipeline(load_recipe(recipe_path), target, out, resume=resume, overwrite=overwrite, **common)
    report = {**run.report, "search": {**outcome.to_dict(), "recipe": "search/recipe.yaml"}}
    write_report(out, report)
    return RunResult(report=report, handoff=run.handoff)


def picked_recipe(plan: Recipe, pick: Scored, budget: Budget) -> Recipe:
    """The recipe that rebuilds ``pick``: the plan's teacher, then prune / quantize as picked, export, benchmark."""
    stages = [plan.stages[0]]
    recovery = {"train": {"epochs": budget.recovery_epochs}}
    if pick.reduction > 0:
        stages.append(STAGES["prune"](reduction=pick.reduction, recovery=recovery))
    if pick.int8:
        drop = budget.max_accuracy_drop if budget.max_accuracy_drop is not None else 1.0
        stages.append(STAGES["quantize"](max_accuracy_drop=drop))
    stages += [STAGES["export"](), STAGES["benchmark"](batch_sizes=tuple(sorted({1, budget.batch, 64})))]
    return Recipe(name="search-pick", data=plan.data, stages=tuple(stages),
                  description=f"{budget.describe()}: {pick.key} (found by edgekd's budget search)")


def recipe_yaml(recipe: Recipe) -> str:
    """The recipe as YAML a person can read: the settings each stage was given (the rest are defaults)."""
    document = {"name": recipe.name, "description": recipe.description,
                "data": recipe.data.model_dump(mode="json", exclude_defaults=True),
                "stages": [{"stage": s.stage, **s.model_dump(mode="json", exclude_unset=True, exclude={"stage"})}
                           for s in recipe.stages]}
    return ("# Written by edgekd's budget search; `edgekd compress --recipe THIS_FILE` rebuilds the pick.\n"
            + yaml.safe_dump(document, sort_keys=False))
