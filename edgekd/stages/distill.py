"""The ``distill`` stage: train a student to imitate a teacher (KD, DKD, FitNets, AT, RKD, LIT).

The teacher is the model entering the stage (``teacher: previous``, which makes a two-stage
teacher-assistant chain, Mirzadeh et al. 2020) or the run's original teacher, optionally
averaged with more teachers (an ensemble). The student is a zoo model, a user's factory, or
derived from the teacher's own family (narrower or shallower; ``derive: {width: 1}`` is
born-again distillation). Only the student and the losses' regressors are optimized; the
regressors stay in the objective and never reach the exported model.
"""

from __future__ import annotations

import enum
import json
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file
from torch import nn

from edgekd import console
from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.distill import LITConfig, LossSpec
from edgekd.distill.cache import with_cached_logits
from edgekd.distill.lit import LITObjective, pair_blocks
from edgekd.distill.objective import DistillObjective, Ensemble
from edgekd.errors import EdgekdError
from edgekd.models import derive_model
from edgekd.models.loading import build_model, load_weights, save_weights
from edgekd.stages.base import Stage
from edgekd.stages.teacher import check_fits_data
from edgekd.train import TrainConfig, fit


class TeacherSource(str, enum.Enum):
    PREVIOUS = "previous"  # the model entering this stage
    ORIGINAL = "original"  # the run's teacher stage output


class Derive(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: float = Field(1.0, gt=0, le=4)
    depth: int | None = Field(None, ge=1)


class ExtraTeacher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    weights: str


class DistillStage(Stage):
    """Distil the teacher into a student with a weighted sum of losses."""

    stage: Literal["distill"] = "distill"
    student: str = "cnn-small"
    derive: Derive | None = None
    teacher: TeacherSource = TeacherSource.PREVIOUS
    ensemble: tuple[ExtraTeacher, ...] = ()
    losses: tuple[LossSpec, ...] = (LossSpec(name="kd"),)
    label_weight: float | None = Field(None, ge=0, description="CE weight; default 1, or 0 when kd/dkd include it")
    train: TrainConfig = TrainConfig(epochs=10, augment=None)
    cache_teacher: bool = True

    def apply(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        teacher = self.make_teacher(model, ctx)
        student = self.make_student(ctx)
        check_fits_data(student, ctx)
        histories = {}
        for phase, objective, epochs in self.phases(teacher, student, ctx):
            data = ctx.data
            if self.can_cache(objective):
                data = with_cached_logits(teacher, ctx.data, ctx.cache_dir)
            console.info(f"distill: {phase} for {epochs} epochs")
            result = fit(student, data, self.train.model_copy(update={"epochs": epochs}), objective=objective,
                         checkpoint=ctx.stage_dir / f"train-{phase}.pt", progress=ctx.progress)
            histories[phase] = result.history
        ctx.details.update(student=self.student_name(), teacher=self.teacher.value, ensemble=len(self.ensemble) + 1,
                           losses=[spec.model_dump() for spec in self.losses], history=histories)
        self.save(student, ctx)
        return student

    def restore(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        student = self.make_student(ctx)
        student.load_state_dict(load_file(ctx.stage_dir / "model.safetensors"))
        if self.derive is None:
            ctx.model_spec = self.student
        return student

    def make_teacher(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        teacher = model if self.teacher is TeacherSource.PREVIOUS else ctx.teacher
        if teacher is None:
            raise EdgekdError("the distill stage needs a teacher: put a teacher stage before it")
        if self.ensemble:
            extra = [load_weights(build_model(t.model, ctx.data.info), t.weights, trust=ctx.trust_checkpoint)
                     for t in self.ensemble]
            temperature = next((s.settings().temperature for s in self.losses if s.name in ("kd", "dkd")), 4.0)
            teacher = Ensemble([teacher, *extra], temperature=temperature)
        return teacher.eval().to(memory_format=torch.channels_last)  # the student's batches are channels-last

    def make_student(self, ctx: RunContext) -> nn.Module:
        """A freshly initialized student (initialization seeded by ``train.seed``)."""
        info = ctx.data.info
        torch.manual_seed(self.train.seed)
        if self.derive is not None:
            if ctx.model_spec is None:
                raise EdgekdError("derive needs a zoo teacher; name the student instead")
            return derive_model(ctx.model_spec, width=self.derive.width, depth=self.derive.depth,
                                in_channels=info.channels, num_classes=info.num_classes, input_size=info.image_size)
        return build_model(self.student, info)

    def student_name(self) -> str:
        return f"derived({self.derive.width}x, depth {self.derive.depth})" if self.derive else self.student

    def phases(self, teacher: nn.Module, student: nn.Module, ctx: RunContext):
        """(name, objective, epochs) in order: LIT blocks or FitNets hints first, then the losses."""
        sample, *_ = next(iter(ctx.val_loader))
        sample = sample[:32]
        terms = [s for s in self.losses if s.name != "lit"]
        for spec in self.losses:
            settings = spec.settings()
            if isinstance(settings, LITConfig):
                pairs = pair_blocks(student, teacher, settings.pairs)
                yield "lit-blocks", LITObjective(teacher, student, pairs, sample), settings.epochs
            elif spec.name == "fitnets" and settings.hint_epochs:
                hint = DistillObjective(teacher, [(1.0, spec.build())], label_weight=0.0)
                hint.setup(student, sample)
                yield "fitnets-hints", hint, settings.hint_epochs
                terms = [s for s in terms if s is not spec]
        terms = terms or [LossSpec(name="kd")]
        label_weight = self.label_weight
        if label_weight is None:
            label_weight = 0.0 if any(s.name in ("kd", "dkd") for s in terms) else 1.0
        objective = DistillObjective(teacher, [(s.weight, s.build()) for s in terms], label_weight=label_weight)
        objective.setup(student, sample)
        yield "distill", objective, self.train.epochs

    def can_cache(self, objective: nn.Module) -> bool:
        return (self.cache_teacher and self.train.augment is None and isinstance(objective, DistillObjective)
                and not objective.teacher_layers)

    def save(self, student: nn.Module, ctx: RunContext) -> None:
        if self.derive is None:
            ctx.model_spec = self.student
        save_weights(student, ctx.stage_dir / "model.safetensors")
        write_json(ctx.stage_dir / "student.json", json.loads(self.model_dump_json()))
