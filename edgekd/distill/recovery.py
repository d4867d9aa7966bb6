"""Recovery: fine-tune a compressed model with the model it was compressed from as KD teacher.

Pruning, factorization and quantization-aware training all lose some accuracy; the standard
cure (Hinton et al. 2015, applied as in NVIDIA ModelOpt and torchdistill) is a short
fine-tuning in which the uncompressed model's soft outputs guide the compressed one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgekd import console
from edgekd import device as devices
from edgekd.data import DataBundle, make_loader
from edgekd.data.objects import as_bundle
from edgekd.distill import LossSpec
from edgekd.distill.cache import with_cached_logits
from edgekd.distill.objective import DistillObjective
from edgekd.metrics import Metric
from edgekd.supervised import SupervisedLoss
from edgekd.train import Schedule, TrainConfig, TrainResult, fit


class RecoveryConfig(BaseModel):
    """KD fine-tuning settings. ``epochs: 0`` skips recovery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    losses: tuple[LossSpec, ...] = (LossSpec(name="kd", temperature=4, alpha=0.9),)
    label_weight: float = Field(0.0, ge=0, description="CE weight on top of the losses (kd/dkd already include it)")
    train: TrainConfig = TrainConfig(epochs=3, lr=0.01, schedule=Schedule.COSINE, augment=None)


def recover(model: nn.Module, teacher: nn.Module, data: DataBundle | DataLoader | Dataset,
            config: RecoveryConfig = RecoveryConfig(), *, val: DataLoader | Dataset | None = None,
            checkpoint: Path | None = None, cache_dir: Path | None = None, epochs: int | None = None,
            progress: bool = True, metric: str | Metric | Callable | None = None,
            loss: Callable | SupervisedLoss | None = None) -> TrainResult | None:
    """Fine-tune ``model`` in place toward ``teacher`` on ``data``; None when there are no epochs to run.

    Args:
        model: the compressed model (trained in place).
        teacher: the model it was compressed from (eval mode, no gradients).
        data: a :class:`DataBundle`, or your training DataLoader/Dataset (with ``val``, else 10% held out).
        config: losses and training settings; ``epochs`` overrides ``config.train.epochs``.
        checkpoint: where to save (and resume) the fine-tuning after each epoch.
        cache_dir: where the teacher's logits are cached for unaugmented in-memory data (None: not cached).
        metric: what the result is scored with on the selection split (default top-1, :mod:`edgekd.metrics`).
        loss: the supervised ``loss(outputs, targets)`` (default cross-entropy); a model with several outputs
            is distilled per output (``kd`` becomes ``outputs``, :class:`edgekd.distill.dense.OutputKD`).
    """
    epochs = config.train.epochs if epochs is None else epochs
    if epochs == 0:
        return None
    data = as_bundle(data, val)
    sample = first_images(data)
    teacher = teacher.eval().to(memory_format=torch.channels_last)  # the batches are channels-last
    outputs = sample_outputs(teacher, sample)
    objective = DistillObjective(teacher, [(s.weight, s.build()) for s in for_outputs(config.losses, outputs)],
                                 label_weight=config.label_weight, supervised=loss)
    objective.setup(model, sample)
    if cache_dir is not None and config.train.augment is None and not objective.teacher_layers \
            and is_cacheable(outputs):
        data = with_cached_logits(teacher, data, cache_dir)
    console.info(f"recovery: {epochs} epochs of KD fine-tuning from the model before compression")
    return fit(model, data, config.train.model_copy(update={"epochs": epochs}), objective=objective,
               checkpoint=checkpoint, progress=progress, metric=metric)


def sample_outputs(model: nn.Module, sample: torch.Tensor):
    """What ``model`` returns for a few images (a tensor, a tuple or a dict), where the model is."""
    was_training = model.training
    try:
        with torch.no_grad():
            return model.eval()(sample[:2].to(devices.home(model)))
    finally:
        model.train(was_training)


def is_cacheable(outputs) -> bool:
    """A teacher's outputs worth caching for a whole training set: one (N, classes) tensor (a dense map for every
    image would not fit in memory: 54,000 images of 21x224x224 are 227 GB)."""
    return isinstance(outputs, torch.Tensor) and outputs.dim() == 2


def for_outputs(specs: tuple[LossSpec, ...], outputs) -> tuple[LossSpec, ...]:
    """The losses for a model that returns ``outputs``: on a tuple or dict of tensors, ``kd`` distils each output
    (``outputs``, same temperature and weight); a single tensor (a classifier's or a segmenter's scores) keeps them."""
    if isinstance(outputs, torch.Tensor):
        return specs
    return tuple(LossSpec(name="outputs", weight=s.weight, **(s.model_extra or {})) if s.name == "kd" else s
                 for s in specs)


def first_images(data: DataBundle, count: int = 32) -> torch.Tensor:
    """A few normalized selection images, for objectives that trace feature shapes before training."""
    images, *_ = next(iter(make_loader(data.selection, data.info, batch_size=count, train=False)))
    return images
