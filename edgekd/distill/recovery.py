"""Recovery: fine-tune a compressed model with the model it was compressed from as KD teacher.

Pruning, factorization and quantization-aware training all lose some accuracy; the standard
cure (Hinton et al. 2015, applied as in NVIDIA ModelOpt and torchdistill) is a short
fine-tuning in which the uncompressed model's soft outputs guide the compressed one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd import console
from edgekd.context import RunContext
from edgekd.distill import LossSpec
from edgekd.distill.cache import with_cached_logits
from edgekd.distill.objective import DistillObjective
from edgekd.train import Schedule, TrainConfig, TrainResult, fit


class RecoveryConfig(BaseModel):
    """KD fine-tuning settings. ``epochs: 0`` skips recovery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    losses: tuple[LossSpec, ...] = (LossSpec(name="kd", temperature=4, alpha=0.9),)
    label_weight: float = Field(0.0, ge=0, description="CE weight on top of the losses (kd/dkd already include it)")
    train: TrainConfig = TrainConfig(epochs=3, lr=0.01, schedule=Schedule.COSINE, augment=None)


def recover(model: nn.Module, teacher: nn.Module, ctx: RunContext, config: RecoveryConfig, *,
            checkpoint: Path, epochs: int | None = None) -> TrainResult | None:
    """Fine-tune ``model`` in place toward ``teacher``; None when there are no epochs to run."""
    epochs = config.train.epochs if epochs is None else epochs
    if epochs == 0:
        return None
    sample, *_ = next(iter(ctx.val_loader))
    teacher = teacher.eval().to(memory_format=torch.channels_last)  # the batches are channels-last
    objective = DistillObjective(teacher, [(s.weight, s.build()) for s in config.losses],
                                 label_weight=config.label_weight)
    objective.setup(model, sample[:32])
    data = ctx.data
    if config.train.augment is None and not objective.teacher_layers:
        data = with_cached_logits(teacher, ctx.data, ctx.cache_dir)
    console.info(f"recovery: {epochs} epochs of KD fine-tuning from the model before compression")
    return fit(model, data, config.train.model_copy(update={"epochs": epochs}), objective=objective,
               checkpoint=checkpoint, progress=ctx.progress)
