"""The ``distill`` stage: train a student to imitate a teacher, or to teach itself.

The teacher is the model entering the stage (``teacher: previous``, which makes a two-stage
teacher-assistant chain, Mirzadeh et al. 2020), the run's original teacher, optionally
averaged with more teachers (an ensemble), or none (``teacher: none``: self, online and mutual
distillation, which can start a run: no teacher stage needed). The student is a zoo model, a
user's factory, the model entering the stage (``student: previous``, weights kept), or derived
from the teacher's own family (``derive: {width: 1}`` is born-again distillation). Only the
student and the losses' own parts (regressors, exits, peers) are optimized; those stay in the
objective and never reach the exported model.
"""

from __future__ import annotations

import copy
import enum
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator
from safetensors.torch import load_file
from torch import nn

from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.distill import LossSpec, teacher_free, teacher_needed_by
from edgekd.distill.cache import model_hash
from edgekd.distill.objective import Ensemble
from edgekd.distill.training import distill_model
from edgekd.errors import EdgekdError
from edgekd.models import derive_model
from edgekd.models.loading import build_model, load_weights, save_weights
from edgekd.stages.base import Handoff, ReportRow, Stage
from edgekd.stages.teacher import check_fits_data
from edgekd.train import TrainConfig


class TeacherSource(str, enum.Enum):
    PREVIOUS = "previous"  # the model entering this stage
    ORIGINAL = "original"  # the run's teacher stage output
    NONE = "none"  # no teacher: only losses whose class says needs_teacher = False, or a phase that makes teachers


PREVIOUS_MODEL = "previous"  # ``student: previous``: the model entering the stage, trained further


class Derive(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: float = Field(1.0, gt=0, le=4)
    depth: int | None = Field(None, ge=1)


class ExtraTeacher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    weights: str


class DistillStage(Stage):
    """Distil the teacher into a student with a weighted sum of losses.

    ``student`` is a zoo name, ``package.module:factory``, ``previous`` (the model entering the
    stage), or (from Python) an ``nn.Module``, trained from the weights it has (a copy: the object
    passed in is not changed). With ``teacher: none`` and a named student the stage needs nothing
    before it, so a recipe may start with it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    makes: ClassVar[tuple[str, ...]] = ("model",)
    uses_target: ClassVar[bool] = False

    stage: Literal["distill"] = "distill"
    public_name: ClassVar[str | None] = "Distill"
    student: str | nn.Module = "cnn-small"
    derive: Derive | None = None
    teacher: TeacherSource = TeacherSource.PREVIOUS
    ensemble: tuple[ExtraTeacher, ...] = ()
    losses: tuple[LossSpec, ...] = (LossSpec(name="kd"),)
    label_weight: float | None = Field(None, ge=0, description="CE weight; default 1, or 0 when kd/dkd include it")
    train: TrainConfig = TrainConfig(epochs=10, augment=None)
    cache_teacher: bool = True

    @model_validator(mode="after")
    def _teacher_free_losses(self) -> "DistillStage":
        if self.teacher is TeacherSource.NONE:
            needing = teacher_needed_by(self.losses)
            if needing:
                terms, makers = teacher_free()
                raise ValueError(f"teacher: none, but {', '.join(needing)} need a teacher: use losses that need none "
                                 f"({', '.join(terms)}) or add {' or '.join(f'{{name: {m}}}' for m in makers)}")
            if self.ensemble:
                raise ValueError("teacher: none has no teacher to ensemble with: remove ensemble")
        return self

    @property
    def needs(self) -> tuple[str, ...]:
        standalone = self.teacher is TeacherSource.NONE and self.student != PREVIOUS_MODEL and self.derive is None
        return () if standalone else ("model",)

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        teacher = self.make_teacher(given, ctx)
        student = self.make_student(given, ctx)
        check_fits_data(student, ctx)
        histories = distill_model(teacher, student, ctx.data, losses=self.losses, label_weight=self.label_weight,
                                  train=self.train, cache_dir=ctx.cache_dir if self.cache_teacher else None,
                                  checkpoint_dir=ctx.stage_dir, progress=ctx.progress, metric=ctx.metric,
                                  loss=ctx.loss)
        row.details.update(student=self.student_name(), teacher=self.teacher.value, ensemble=len(self.ensemble) + 1,
                           losses=[spec.model_dump() for spec in self.losses], history=histories)
        save_weights(student, ctx.stage_dir / "model.safetensors")
        write_json(ctx.stage_dir / "student.json", self.settings())
        return given.with_model(student, model_spec=self.student_spec(given))

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        student = self.make_student(given, ctx)
        student.load_state_dict(load_file(ctx.stage_dir / "model.safetensors"))
        return given.with_model(student, model_spec=self.student_spec(given))

    @field_serializer("student")
    def _student_key(self, student: str | nn.Module) -> str:
        """A module is recorded by class and weights, so a resumed run notices a different student."""
        return student if isinstance(student, str) else f"{type(student).__qualname__}@{model_hash(student)}"

    def student_spec(self, given: Handoff) -> str | None:
        """The student's zoo name or import path; a derived or user-built student is not one."""
        if self.student == PREVIOUS_MODEL:
            return given.model_spec
        return self.student if self.derive is None and isinstance(self.student, str) else None

    def make_teacher(self, given: Handoff, ctx: RunContext) -> nn.Module | None:
        if self.teacher is TeacherSource.NONE:
            return None
        teacher = given.model if self.teacher is TeacherSource.PREVIOUS else given.teacher
        if teacher is None:
            raise EdgekdError("the distill stage needs a teacher: put a teacher stage before it")
        if self.ensemble:
            extra = [load_weights(build_model(t.model, ctx.data.info), t.weights, trust=ctx.trust_checkpoint)
                     for t in self.ensemble]
            temperature = next((s.settings().temperature for s in self.losses
                                if hasattr(s.settings(), "temperature")), 4.0)
            teacher = Ensemble([teacher, *extra], temperature=temperature)
        return teacher

    def make_student(self, given: Handoff, ctx: RunContext) -> nn.Module:
        """A freshly initialized student (initialization seeded by ``train.seed``)."""
        info = ctx.data.info
        torch.manual_seed(self.train.seed)
        if self.derive is not None:
            if given.model_spec is None:
                raise EdgekdError("derive needs a zoo model entering the stage (this one was pruned, factorized or "
                                  "given as an nn.Module); name the student instead")
            return derive_model(given.model_spec, width=self.derive.width, depth=self.derive.depth,
                                in_channels=info.channels, num_classes=info.num_classes, input_size=info.image_size)
        if isinstance(self.student, nn.Module):
            return copy.deepcopy(self.student).cpu()
        if self.student == PREVIOUS_MODEL:
            if given.model is None:
                raise EdgekdError("student: previous needs a model entering the stage; name the student instead")
            return copy.deepcopy(given.model)
        return build_model(self.student, info)

    def student_name(self) -> str:
        if self.derive is not None:
            return f"derived({self.derive.width}x, depth {self.derive.depth})"
        return self.student if isinstance(self.student, str) else type(self.student).__qualname__
