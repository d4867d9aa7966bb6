"""Knowledge distillation: feature taps, losses (registry ``LOSSES``), objectives, teacher caching."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.distill.losses import AT, DKD, KD, NKD, RKD, DistillLoss, FitNets, LossConfig, Outputs
from edgekd.distill.crd import CRD
from edgekd.distill.dense import OutputKD
from edgekd.distill.online import BDKD, DML
from edgekd.distill.selfkd import BYOT, USKD, LabelSmoothing, TfKDReg
from edgekd.distill.taps import FeatureTaps, find_module
from edgekd.errors import ConfigError, UnknownNameError
from edgekd.registry import register


class LITConfig(LossConfig):
    """LIT's first phase (distill/lit.py): ``epochs`` of block training before the end-to-end phase.

    ``kd_weight`` (β) weighs KD on the whole student against the blocks' losses (1 − β); the KD is the
    stage's ``kd`` entry, or Hinton KD's defaults. ``inherit`` starts the student from the teacher's
    layers outside the blocks where names and shapes match (frozen in this phase). Defaults are the
    authors' (β = 0.75, inherited stem and classifier); ``kd_weight: 0, inherit: false`` is block training
    alone.
    """

    is_phase: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True

    epochs: int = Field(3, ge=1)
    pairs: tuple[tuple[str, str], ...] | None = None
    kd_weight: float = Field(0.75, ge=0, le=1)
    inherit: bool = True


class GenerationsConfig(LossConfig):
    """Born-again / label-refinery generations: ``count`` students in turn, each taught by the one before.

    Generation 0 is the stage's teacher, or, with none, the student trained on labels alone (the
    "pre-trained copy of the student" of Tf-KD_self). Each later generation starts from the student's
    initial weights and is distilled with the stage's other losses (default kd) from the previous
    generation, or from the ensemble of all previous ones (``ensemble: true``). The last one is kept.
    """

    is_phase: ClassVar[bool] = True
    makes_teachers: ClassVar[bool] = True

    count: int = Field(1, ge=1, le=10)
    ensemble: bool = False


LOSSES: dict[str, type] = {"kd": KD, "dkd": DKD, "fitnets": FitNets, "at": AT, "rkd": RKD, "nkd": NKD, "crd": CRD,
                          "label-smoothing": LabelSmoothing, "tfkd-reg": TfKDReg, "uskd": USKD, "byot": BYOT,
                          "dml": DML, "bdkd": BDKD, "lit": LITConfig, "generations": GenerationsConfig,
                          "outputs": OutputKD}
"""Losses by name: :class:`DistillLoss` classes, and the settings of training phases (``is_phase``: ``lit``,
``generations``; distill/lit.py, distill/training.py) rather than weighted terms. Users add theirs with
:func:`register_loss`."""


def register_loss(name: str, *, override: bool = False) -> Callable[[type], type]:
    """Decorator: make a :class:`DistillLoss` subclass available by ``name`` to ``Distill(losses=[...])`` and recipes.

    The class takes its settings (a nested ``Config(LossConfig)``, default none) in ``__init__``, and its
    ``forward(student, teacher, labels)`` returns the scalar term; ``student``/``teacher`` are
    :class:`Outputs` (``logits``, and ``features`` of the layers ``student_layers``/``teacher_layers`` name).
    Class attributes the stage reads: ``needs_teacher`` (default True), ``uses_labels`` (it includes the
    label term itself), ``needs_indices``. Example::

        @edgekd.register_loss("logit-mse")
        class LogitMSE(DistillLoss):
            def forward(self, student, teacher, labels):
                return F.mse_loss(student.logits, teacher.logits)
    """
    def add(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, DistillLoss)):
            raise ConfigError(f"register_loss('{name}') decorates a subclass of edgekd.distill.DistillLoss, "
                              f"not {cls!r}")
        if cls.is_phase or cls.makes_teachers:
            raise ConfigError(f"loss '{name}': a registered loss is a term of the objective; is_phase and "
                              f"makes_teachers describe the built-in phases (lit, generations) the training loop runs")
        register(LOSSES, "loss", name, cls, override=override)
        return cls
    return add


def loss_entry(name: str) -> type:
    """The registered class of loss ``name``: a :class:`DistillLoss`, or a phase's :class:`LossConfig`. Both answer
    ``needs_teacher``, ``is_phase`` and ``makes_teachers``, which is all the stage asks of an entry."""
    if name not in LOSSES:
        raise UnknownNameError("loss", name, LOSSES)
    return LOSSES[name]


def config_class(name: str) -> type[LossConfig]:
    entry = loss_entry(name)
    return entry if isinstance(entry, type) and issubclass(entry, LossConfig) else entry.Config


class LossSpec(BaseModel):
    """One entry of a distill stage's ``losses``: a name, a weight, and that loss's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    weight: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _check_settings(self) -> "LossSpec":
        try:
            cls = config_class(self.name)
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None
        cls.model_validate(self.model_extra or {})
        return self

    def settings(self) -> LossConfig:
        return config_class(self.name).model_validate(self.model_extra or {})

    def build(self) -> DistillLoss:
        return LOSSES[self.name](self.settings())


def teacher_needed_by(specs: tuple[LossSpec, ...]) -> list[str]:
    """The losses in ``specs`` that need a teacher none is given; a phase that trains its own teachers
    (``generations``) provides one for every other."""
    if any(loss_entry(s.name).makes_teachers for s in specs):
        return []
    return [s.name for s in specs if loss_entry(s.name).needs_teacher]


def teacher_free() -> tuple[list[str], list[str]]:
    """What ``teacher: none`` can run, read off the registry (built-ins and the user's): the terms that need no
    teacher, and the phases that train their own teachers (with which any term can run)."""
    terms = [name for name, entry in LOSSES.items() if not (entry.needs_teacher or entry.is_phase)]
    return terms, [name for name, entry in LOSSES.items() if entry.makes_teachers]


def is_phase(spec: LossSpec) -> bool:
    """A training phase run by the loop itself (``lit``, ``generations``), not a term summed into the objective."""
    return loss_entry(spec.name).is_phase


def makes_teachers(spec: LossSpec) -> bool:
    """A phase that trains its own teachers (``generations``), so the stage needs none."""
    return loss_entry(spec.name).makes_teachers


__all__ = ["LOSSES", "register_loss", "loss_entry", "is_phase", "makes_teachers", "teacher_free", "teacher_needed_by",
           "DistillLoss", "FeatureTaps", "GenerationsConfig", "LITConfig", "LossSpec", "Outputs", "find_module"]
