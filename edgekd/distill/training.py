"""Distillation as one call: train a student to imitate a teacher with a weighted sum of losses.

``distill_model(teacher, student, data, losses=[...])`` runs the phases the losses ask for, in
order: LIT's block-wise phase (Koratana et al. 2019) or FitNets' hint phase (Romero et al. 2015)
first, then end-to-end training on the weighted losses (plus cross-entropy where the losses do
not already include it). Only the student and the losses' own parts (regressors, exits, peers,
online teachers) are optimized; the teacher runs in eval mode without gradients, and may be None
for teacher-free losses. A ``generations`` entry repeats the whole for born-again generations
(Furlanello et al. 2018; label refinery, Bagherinezhad et al. 2018; Tf-KD_self, Yuan et al. 2020).
Without augmentation the teacher's logits are computed once and cached (``cache_dir``), so a KD
epoch costs about what a student-alone epoch costs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgekd import console
from edgekd.data import DataBundle, make_loader
from edgekd.data.objects import as_bundle
from edgekd.distill import GenerationsConfig, LITConfig, LossSpec, is_phase, makes_teachers
from edgekd.distill.cache import with_cached_logits
from edgekd.distill.crd import with_indices
from edgekd.distill.lit import LITObjective, pair_blocks
from edgekd.distill.objective import DistillObjective, Ensemble
from edgekd.distill.peers import frozen_copy
from edgekd.distill.recovery import first_images, for_outputs, is_cacheable, sample_outputs
from edgekd.errors import EdgekdError
from edgekd.judge import judge
from edgekd.metrics import Metric, resolve_metric
from edgekd.supervised import SupervisedLoss, as_supervised
from edgekd.train import TrainConfig, fit


def distill_model(teacher: nn.Module | None, student: nn.Module, data: DataBundle | DataLoader | Dataset, *,
                  val: DataLoader | Dataset | None = None, losses: tuple[LossSpec, ...] = (LossSpec(name="kd"),),
                  label_weight: float | None = None, train: TrainConfig = TrainConfig(epochs=10, augment=None),
                  cache_dir: Path | None = None, checkpoint_dir: Path | None = None,
                  progress: bool = True, metric: str | Metric | Callable | None = None,
                  loss: Callable | SupervisedLoss | None = None) -> dict[str, list[dict]]:
    """Train ``student`` in place to imitate ``teacher`` on ``data``; returns each phase's epoch history.

    Args:
        teacher: the trained model (kept in eval mode, never updated); None for teacher-free losses
            (label-smoothing, tfkd-reg, uskd, byot, dml, bdkd) and for ``generations`` (self-taught).
        student: the model to train (a fresh or pretrained ``nn.Module``).
        data: a :class:`DataBundle`, or your training DataLoader/Dataset (with ``val``, else 10% held out).
        losses: weighted distillation terms, e.g. ``(LossSpec(name="dkd"), LossSpec(name="rkd", weight=1))``.
        label_weight: cross-entropy weight; default 0 when a loss includes it (kd, dkd, the self and online
            losses), else 1.
        train: epochs, optimizer and schedule of the end-to-end phase (hint/LIT phases set their own epochs).
        cache_dir: where the teacher's logits are cached when they can be (None: computed live).
        checkpoint_dir: where each phase checkpoints after every epoch (and resumes from).
        metric: what the student is scored with on the selection split (default top-1, :mod:`edgekd.metrics`).
        loss: the supervised ``loss(outputs, targets)`` replacing cross-entropy; on a model with several outputs
            ``kd`` distils each output (:class:`edgekd.distill.dense.OutputKD`).
    """
    data = as_bundle(data, val)
    generations = next((s.settings() for s in losses if makes_teachers(s)), None)
    terms = tuple(s for s in losses if not makes_teachers(s))
    run = dict(label_weight=label_weight, train=train, cache_dir=cache_dir, checkpoint_dir=checkpoint_dir,
               progress=progress, judging=Judging(resolve_metric(metric), as_supervised(loss)))
    if generations is not None:
        return distill_generations(teacher, student, data, generations, losses=terms, **run)
    return distill_once(teacher, student, data, losses=terms, **run)


@dataclass(frozen=True)
class Judging:
    """The run's metric and supervised loss, as one distillation passes them on."""

    metric: Metric
    loss: SupervisedLoss


def distill_once(teacher: nn.Module | None, student: nn.Module, data: DataBundle, *, losses: tuple[LossSpec, ...],
                 label_weight: float | None, train: TrainConfig, cache_dir: Path | None, checkpoint_dir: Path | None,
                 progress: bool, judging: Judging, prefix: str = "") -> dict[str, list[dict]]:
    """The phases of one student's distillation, in order; ``prefix`` names its checkpoints apart."""
    if teacher is not None:
        teacher = teacher.eval().to(memory_format=torch.channels_last)  # the student's batches are channels-last
    sample = first_images(data)
    outputs = sample_outputs(teacher if teacher is not None else student, sample)
    histories = {}
    for phase, objective, epochs in phases(teacher, student, for_outputs(losses, outputs), label_weight, sample,
                                           train.epochs, supervised=judging.loss):
        phase_data = data
        if cache_dir is not None and can_cache(objective, train) and is_cacheable(outputs):
            phase_data = with_cached_logits(teacher, data, cache_dir)
        if isinstance(objective, DistillObjective) and objective.wants_indices:  # CRD's memory banks
            objective.bind_dataset(len(data.train))
            phase_data = with_indices(data)
        console.info(f"distill: {prefix}{phase} for {epochs} epochs")
        checkpoint = checkpoint_dir / f"train-{prefix}{phase}.pt" if checkpoint_dir is not None else None
        result = fit(student, phase_data, train.model_copy(update={"epochs": epochs}), objective=objective,
                     checkpoint=checkpoint, progress=progress, metric=judging.metric)
        objective.finish(student, validation_score(data, judging.metric))
        histories[f"{prefix}{phase}"] = result.history
    return histories


def validation_score(data: DataBundle, metric: Metric | None = None):
    """``score(model)``: the metric (default top-1) on the selection split (for objectives that choose what to keep)."""
    loader = make_loader(data.selection, data.info, batch_size=256, train=False)
    return lambda model: judge(model, loader, metric)


def distill_generations(teacher: nn.Module | None, student: nn.Module, data: DataBundle,
                        config: GenerationsConfig, *, losses: tuple[LossSpec, ...], label_weight: float | None,
                        train: TrainConfig, cache_dir: Path | None, checkpoint_dir: Path | None,
                        progress: bool, judging: Judging) -> dict[str, list[dict]]:
    """Generations 1..count, each distilled from the one before (or their ensemble); the last one is kept."""
    histories: dict[str, list[dict]] = {}
    teachers = [teacher] if teacher is not None else []
    if teacher is None:  # generation 0: the student's architecture trained on labels alone
        first = copy.deepcopy(student)
        console.info(f"distill: generation 0 (labels alone) for {train.epochs} epochs")
        checkpoint = checkpoint_dir / "train-generation-0.pt" if checkpoint_dir is not None else None
        histories["generation-0"] = fit(first, data, train, checkpoint=checkpoint, progress=progress,
                                        metric=judging.metric, loss=judging.loss).history
        teachers.append(frozen_copy(first))
    current = student
    for g in range(1, config.count + 1):
        current = copy.deepcopy(student)  # the student's initial weights (it is only trained at the end)
        histories.update(distill_once(generation_teacher(teachers, losses, config.ensemble), current, data,
                                      losses=losses, label_weight=label_weight, train=train, cache_dir=cache_dir,
                                      checkpoint_dir=checkpoint_dir, progress=progress, judging=judging,
                                      prefix=f"generation-{g}-"))
        teachers.append(frozen_copy(current))
    student.load_state_dict(current.state_dict())
    return histories


def generation_teacher(teachers: list[nn.Module], losses: tuple[LossSpec, ...], ensemble: bool) -> nn.Module:
    if not ensemble or len(teachers) == 1:
        return teachers[-1]
    temperature = next((s.settings().temperature for s in losses if hasattr(s.settings(), "temperature")), 4.0)
    return Ensemble(teachers, temperature=temperature)


def phases(teacher: nn.Module | None, student: nn.Module, losses: tuple[LossSpec, ...],
           label_weight: float | None, sample: torch.Tensor, epochs: int, *, supervised: SupervisedLoss | None = None):
    """(name, objective, epochs) in order: LIT blocks or FitNets hints first, then the losses."""
    terms = [s for s in losses if not is_phase(s)]
    for spec in losses:
        settings = spec.settings()
        if isinstance(settings, LITConfig):
            pairs = pair_blocks(student, require_teacher(teacher, "lit"), settings.pairs)
            kd = next((s for s in terms if s.name == "kd"), LossSpec(name="kd")).build()
            lit = LITObjective(teacher, student, pairs, sample, kd=kd, kd_weight=settings.kd_weight,
                               inherit=settings.inherit)
            if lit.inherited:
                console.info(f"distill: LIT student starts from the teacher's {', '.join(lit.inherited)}")
            yield "lit-blocks", lit, settings.epochs
        elif spec.name == "fitnets" and settings.hint_epochs:
            hint = DistillObjective(teacher, [(1.0, spec.build())], label_weight=0.0, supervised=supervised)
            hint.setup(student, sample)
            yield "fitnets-hints", hint, settings.hint_epochs
            terms = [s for s in terms if s is not spec]
    built = [(s.weight, s.build()) for s in terms or [LossSpec(name="kd")]]
    if label_weight is None:  # cross-entropy once: not again on top of losses that contain it (kd, dkd)
        label_weight = 0.0 if any(loss.uses_labels for _, loss in built) else 1.0
    objective = DistillObjective(teacher, built, label_weight=label_weight, supervised=supervised)
    objective.setup(student, sample)
    yield "distill", objective, epochs


def require_teacher(teacher: nn.Module | None, name: str) -> nn.Module:
    if teacher is None:
        raise EdgekdError(f"{name} needs a teacher: put a teacher stage (or a model) before the distill stage")
    return teacher


def can_cache(objective: nn.Module, train: TrainConfig) -> bool:
    """Logits can be cached when every epoch shows the teacher the same images and no loss needs its features."""
    return (train.augment is None and isinstance(objective, DistillObjective) and objective.uses_teacher
            and not objective.teacher_layers and not objective.wants_indices)
