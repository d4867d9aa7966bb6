"""Distillation as one call: train a student to imitate a teacher with a weighted sum of losses.

``distill_model(teacher, student, data, losses=[...])`` runs the phases the losses ask for, in
order: LIT's block-wise phase (Koratana et al. 2019) or FitNets' hint phase (Romero et al. 2015)
first, then end-to-end training on the weighted losses (plus cross-entropy where the losses do
not already include it). Only the student and the losses' regressors are optimized; the teacher
runs in eval mode without gradients. Without augmentation the teacher's logits are computed once
and cached (``cache_dir``), so a KD epoch costs about what a student-alone epoch costs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgekd import console
from edgekd.data import DataBundle
from edgekd.data.objects import as_bundle
from edgekd.distill import LITConfig, LossSpec
from edgekd.distill.cache import with_cached_logits
from edgekd.distill.lit import LITObjective, pair_blocks
from edgekd.distill.objective import DistillObjective
from edgekd.distill.recovery import first_images
from edgekd.train import TrainConfig, fit


def distill_model(teacher: nn.Module, student: nn.Module, data: DataBundle | DataLoader | Dataset, *,
                  val: DataLoader | Dataset | None = None, losses: tuple[LossSpec, ...] = (LossSpec(name="kd"),), label_weight: float | None = None,
                  train: TrainConfig = TrainConfig(epochs=10, augment=None), cache_dir: Path | None = None,
                  checkpoint_dir: Path | None = None, progress: bool = True) -> dict[str, list[dict]]:
    """Train ``student`` in place to imitate ``teacher`` on ``data``; returns each phase's epoch history.

    Args:
        teacher: the trained model (kept in eval mode, never updated).
        student: the model to train (a fresh or pretrained ``nn.Module``).
        data: a :class:`DataBundle`, or your training DataLoader/Dataset (with ``val``, else 10% held out).
        losses: weighted distillation terms, e.g. ``(LossSpec(name="dkd"), LossSpec(name="rkd", weight=1))``.
        label_weight: cross-entropy weight; default 0 when kd or dkd (which include it) are used, else 1.
        train: epochs, optimizer and schedule of the end-to-end phase (hint/LIT phases set their own epochs).
        cache_dir: where the teacher's logits are cached when they can be (None: computed live).
        checkpoint_dir: where each phase checkpoints after every epoch (and resumes from).
    """
    data = as_bundle(data, val)
    teacher = teacher.eval().to(memory_format=torch.channels_last)  # the student's batches are channels-last
    histories = {}
    for phase, objective, epochs in phases(teacher, student, losses, label_weight, first_images(data),
                                           train.epochs):
        phase_data = data
        if cache_dir is not None and can_cache(objective, train):
            phase_data = with_cached_logits(teacher, data, cache_dir)
        console.info(f"distill: {phase} for {epochs} epochs")
        checkpoint = checkpoint_dir / f"train-{phase}.pt" if checkpoint_dir is not None else None
        result = fit(student, phase_data, train.model_copy(update={"epochs": epochs}), objective=objective,
                     checkpoint=checkpoint, progress=progress)
        histories[phase] = result.history
    return histories


def phases(teacher: nn.Module, student: nn.Module, losses: tuple[LossSpec, ...], label_weight: float | None,
           sample: torch.Tensor, epochs: int):
    """(name, objective, epochs) in order: LIT blocks or FitNets hints first, then the losses."""
    terms = [s for s in losses if s.name != "lit"]
    for spec in losses:
        settings = spec.settings()
        if isinstance(settings, LITConfig):
            pairs = pair_blocks(student, teacher, settings.pairs)
            yield "lit-blocks", LITObjective(teacher, student, pairs, sample), settings.epochs
        elif spec.name == "fitnets" and settings.hint_epochs:
            hint = DistillObjective(teacher, [(1.0, spec.build())], label_weight=0.0)
            hint.setup(student, sample)
            yield "fitnets-hints", hint, settings.hint_epochs
            terms = [s for s in terms if s is not spec]
    built = [(s.weight, s.build()) for s in terms or [LossSpec(name="kd")]]
    if label_weight is None:  # cross-entropy once: not again on top of losses that contain it (kd, dkd)
        label_weight = 0.0 if any(loss.uses_labels for _, loss in built) else 1.0
    objective = DistillObjective(teacher, built, label_weight=label_weight)
    objective.setup(student, sample)
    yield "distill", objective, epochs


def can_cache(objective: nn.Module, train: TrainConfig) -> bool:
    """Logits can be cached when every epoch shows the teacher the same images and no loss needs its features."""
    return train.augment is None and isinstance(objective, DistillObjective) and not objective.teacher_layers
