"""A candidate as a plan: the stage objects that compress its base, which the search builds and scores, and
which the picked recipe holds as they are.

One encoding of the chain: :func:`compression_plan` gives the prune / factorize / quantize stages of a
candidate; the search builds exactly those (its cheap proxy only shortens their recovery,
:func:`proxy_plan`), and :func:`picked_recipe` writes the winner's plan out after the teacher (and the
student's distill stage), with export and benchmark.
"""

from __future__ import annotations

import yaml
from torch import nn

from edgekd.distill.recovery import RecoveryConfig
from edgekd.plan import Plan
from edgekd.recipe import Recipe
from edgekd.search.space import Budget, Candidate
from edgekd.stages import STAGES
from edgekd.stages.base import Stage


def compression_plan(candidate: Candidate, budget: Budget) -> Plan:
    """The stages that compress ``candidate``'s base: pruned or factorized as it says (with the budget's recovery),
    then int8 with the budget's accuracy drop, int8 or float and which layers stay float judged at its batch."""
    recovery = {"train": {"epochs": budget.recovery_epochs, "seed": budget.seed}}
    stages: list[Stage] = []
    if candidate.reduction > 0:
        stages.append(STAGES["prune"](reduction=candidate.reduction, scope=candidate.allocation, recovery=recovery))
    if candidate.factorize > 0:
        stages.append(STAGES["factorize"](reduction=candidate.factorize, recovery=recovery))
    if candidate.int8:
        drop = budget.max_accuracy_drop if budget.max_accuracy_drop is not None else 1.0
        stages.append(STAGES["quantize"](max_accuracy_drop=drop, report_batches=(budget.batch,)))
    return Plan(tuple(stages))


def proxy_plan(plan: Plan, epochs: int) -> Plan:
    """``plan`` with every recovery shortened to ``epochs``: the search's cheap stand-in for it (its other
    settings unchanged, so a short recovery is the only way the proxy differs from what ships)."""
    def shortened(stage: Stage) -> Stage:
        recovery = getattr(stage, "recovery", None)
        if not isinstance(recovery, RecoveryConfig):
            return stage
        train = recovery.train.model_copy(update={"epochs": epochs})
        return stage.model_copy(update={"recovery": recovery.model_copy(update={"train": train})})

    return Plan(tuple(shortened(stage) for stage in plan.stages))


def student_stages(plan: Recipe, budget: Budget, *, user_model: nn.Module | None) -> dict[str, Stage]:
    """The distill stage that makes each of the search's students, by student name.

    ``budget.students`` given: each with the recipe's distill settings (or the defaults). Not given:
    the recipe's own distill student, unless the model is the user's and the recipe the built-in
    default (whose small Fashion-MNIST student would not suit an arbitrary model).
    """
    distill = next((s for s in plan.stages if s.stage == "distill"), None)
    if budget.students is None:
        if distill is None or (user_model is not None and plan.name == "default"):
            return {}
        return {distill.student_name(): distill}
    template = distill if distill is not None else STAGES["distill"]()
    return {name: template.model_copy(update={"student": name, "derive": None}) for name in budget.students}


def picked_recipe(plan: Recipe, pick: Candidate, budget: Budget, students: dict[str, Stage]) -> Recipe:
    """The recipe that rebuilds ``pick``: the plan's teacher, the pick's student, then the pick's
    :func:`compression_plan` as the search built it, export, benchmark."""
    stages = [plan.stages[0], *([students[pick.base]] if pick.base in students else [])]
    stages += [*compression_plan(pick, budget).stages, STAGES["export"](),
               STAGES["benchmark"](batch_sizes=tuple(sorted({1, budget.batch, 64})))]
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
