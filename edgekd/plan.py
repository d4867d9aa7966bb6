"""A plan: the ordered stage settings that make a model, and the one function that builds it.

A recipe's stages are a plan; so is each candidate of the budget search (the stages that compress
its base). Both are built by :func:`build` (one stage at a time by :func:`build_stage`), so what the
search scored and what the picked recipe ships come from the same stage code and the same settings:
the pipeline adds recording, checkpoints and resume around :func:`build_stage`; the search builds a
candidate's plan into a scratch folder and scores what it produced. :attr:`Plan.settings_hash` names a
plan by its settings alone (the pipeline's per-stage keys add the data, the target and the user's model).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.context import RunContext
from edgekd.stages.base import Handoff, ReportRow, Stage


@dataclass(frozen=True)
class Plan:
    """Stage settings in the order they run (the same frozen stage objects a :class:`~edgekd.recipe.Recipe` holds)."""

    stages: tuple[Stage, ...] = ()

    @property
    def settings_hash(self) -> str:
        """A short hash of every stage's settings, defaults included, in order: equal plans build alike."""
        text = json.dumps([stage.settings() for stage in self.stages], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def names(self) -> tuple[str, ...]:
        return tuple(stage.stage for stage in self.stages)

    def split_before(self, name: str) -> tuple[Plan, Plan]:
        """(the stages before the first ``name`` stage, that stage and the rest): built one after the other they
        build the whole plan, so a prefix two plans share is built once."""
        index = next((i for i, stage in enumerate(self.stages) if stage.stage == name), len(self.stages))
        return Plan(self.stages[:index]), Plan(self.stages[index:])


@dataclass
class Built:
    """What building a plan produced: the last handoff, and each stage's report row."""

    handoff: Handoff
    rows: list[ReportRow] = field(default_factory=list)


def stage_folder(root: Path, index: int, stage: Stage) -> Path:
    """Where stage ``index`` of a plan built into ``root`` keeps its outputs: ``ROOT/stages/NN-NAME``."""
    return Path(root) / "stages" / f"{index:02d}-{stage.stage}"


def build_stage(stage: Stage, given: Handoff, ctx: RunContext) -> tuple[Handoff, ReportRow]:
    """One stage's work on ``given`` in ``ctx`` (its folder is ``ctx.stage_dir``): the next handoff and its row."""
    row = ReportRow()
    return stage.apply(given, ctx, row), row


def build(plan: Plan, given: Handoff, ctx: RunContext, *, root: Path) -> Built:
    """Every stage of ``plan`` in order from ``given``, each in its folder under ``root`` (which should hold no
    earlier build: a stage resumes training checkpoints it finds there)."""
    built = Built(given)
    for index, stage in enumerate(plan.stages):
        ctx.stage_dir = stage_folder(root, index, stage)
        ctx.stage_dir.mkdir(parents=True, exist_ok=True)
        built.handoff, row = build_stage(stage, built.handoff, ctx)
        built.rows.append(row)
    return built
