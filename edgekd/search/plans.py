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
from edgekd.stages.quantize import SCORING_IMAGES as QUANTIZE_SCORING_IMAGES
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


def proxy_plan(plan: Plan, epochs: int, images: int) -> Plan:
    """``plan`` as the search's cheap stand-in, built on ``images`` training images: every recovery (and the
    quantize stage's QAT fallback) shortened to ``epochs``, and quantization calibrated on what those images
    leave after the 100 its accuracy control scores on. Its other settings are unchanged, so a short fine-tune
    on fewer images is the only way the proxy differs from what ships."""
    def shortened(config: RecoveryConfig) -> RecoveryConfig:
        return config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs})})

    def proxied(stage: Stage) -> Stage:
        update = {name: shortened(value) for name in ("recovery", "qat")
                  if isinstance(value := getattr(stage, name, None), RecoveryConfig)}
        if stage.stage == "quantize":
            update["calibration_images"] = min(stage.calibration_images, images - QUANTIZE_SCORING_IMAGES)
        return stage.model_copy(update=update)

    return Plan(tuple(proxied(stage) for stage in plan.stages))


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
