"""The ``teacher`` stage: the trained model to compress, loaded from weights or trained once and cached."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import ClassVar, Literal

import torch
from safetensors.torch import load_file
from torch import nn

from edgekd import console
from edgekd.context import RunContext
from edgekd.errors import DataError, EdgekdError
from edgekd.models.loading import build_model, load_weights, save_weights
from edgekd.models.shipped import shipped_teacher
from edgekd.stages.base import Handoff, ReportRow, Stage
from edgekd.train import TrainConfig, fit

DEFAULT_TRAINING = TrainConfig(epochs=18, lr=0.1, label_smoothing=0.1)


class TeacherStage(Stage):
    """Start the run from a teacher.

    ``model`` is a zoo name or ``package.module:factory``; unset, it is the ``nn.Module`` given to
    :func:`edgekd.compress`, used with its weights as they are. With ``weights`` the teacher is
    loaded (safely: safetensors or ``weights_only``); without, a named model is trained with
    ``train`` on the run's data and cached, so the next run with the same model, data and
    settings loads it in a second. With ``shipped`` (the default), weights that edgekd ships for
    exactly this model, data and settings (:mod:`edgekd.models.shipped`, sha256-checked) are loaded
    instead of training: the default job's 18-epoch teacher, for one (``--train-teacher`` trains it).
    """

    stage: Literal["teacher"] = "teacher"
    needs: ClassVar[tuple[str, ...]] = ()
    makes: ClassVar[tuple[str, ...]] = ("model",)
    uses_target: ClassVar[bool] = False
    model: str | None = "cnn"
    weights: str | None = None
    train: TrainConfig = DEFAULT_TRAINING
    cache: bool = True
    shipped: bool = True

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        teacher = self.build(ctx)
        check_fits_data(teacher, ctx)
        if self.weights:
            load_weights(teacher, self.weights, trust=ctx.trust_checkpoint)
            row.details["source"] = f"weights file {self.weights}"
        elif self.model is None:
            row.details["source"] = f"the {type(teacher).__name__} given to compress(), weights as given"
        elif self.cache and self.cache_file(ctx).exists():
            teacher.load_state_dict(load_file(self.cache_file(ctx)))
            row.details["source"] = f"cached training {self.cache_file(ctx)}"
            console.info(f"teacher: loaded cached {self.model} from {self.cache_file(ctx)}")
        elif self.shipped and (path := self.shipped_weights(ctx)) is not None:
            teacher.load_state_dict(load_file(path))
            row.details["source"] = f"shipped weights {path.name} (sha256-checked; --train-teacher trains instead)"
            console.info(f"teacher: loaded edgekd's shipped {self.model} ({path}), trained with these settings on "
                         f"this data; --train-teacher trains it instead")
        else:
            console.info(f"teacher: training {self.model} for {self.train.epochs} epochs "
                         f"on {len(ctx.data.train)} images")
            result = fit(teacher, ctx.data, self.train, checkpoint=ctx.stage_dir / "train.pt",
                         progress=ctx.progress, metric=ctx.metric, loss=ctx.loss)
            row.details.update(source="trained", train_seconds=round(result.seconds, 1), history=result.history)
            if self.cache:
                save_weights(teacher, self.cache_file(ctx))
        save_weights(teacher, ctx.stage_dir / "model.safetensors")
        return Handoff(model=teacher, teacher=teacher, model_spec=self.model)

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        teacher = self.build(ctx)
        teacher.load_state_dict(load_file(ctx.stage_dir / "model.safetensors"))
        return Handoff(model=teacher, teacher=teacher, model_spec=self.model)

    def build(self, ctx: RunContext) -> nn.Module:
        """The teacher's architecture: the user's module (a copy: theirs is never trained), or built by name."""
        if self.model is None:
            if ctx.user_model is None:
                raise EdgekdError("the teacher stage has no model: name one (model: cnn, or package.module:factory), "
                                  "or pass an nn.Module to edgekd.compress()")
            return copy.deepcopy(ctx.user_model).cpu()
        torch.manual_seed(self.train.seed)  # reproducible initialization, not just reproducible batches
        return build_model(self.model, ctx.data.info)

    def shipped_weights(self, ctx: RunContext) -> Path | None:
        """edgekd's shipped weights for this model, data and settings (all trained with cross-entropy)."""
        if not ctx.loss.is_default:
            return None
        return shipped_teacher(self.model, ctx.data.fingerprint(), self.train.fingerprint())

    def cache_file(self, ctx: RunContext) -> Path:
        """Cache key: model, data contents, training settings, and the user's loss (by its code) when there is one."""
        key = f"{self.model}|{ctx.data.fingerprint()}|{self.train.fingerprint()}"
        if not ctx.loss.is_default:
            key += f"|loss:{ctx.loss.fingerprint()}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return ctx.cache_dir / "teachers" / f"{self.model.replace(':', '_')}-{digest}.safetensors"


def check_fits_data(model: nn.Module, ctx: RunContext) -> None:
    """Run one selection image through the model: shape mismatches become one clear line. A classifier's
    (N, C) scores must have the data's class count; other outputs (dense maps, several heads) are the
    metric's and the loss's to judge."""
    info = ctx.data.info
    images, *_ = next(iter(ctx.selection_loader))
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(images[:2])
    except RuntimeError as exc:
        raise DataError(f"the model cannot take the data's images ({info.channels}×{info.image_size[0]}×"
                        f"{info.image_size[1]} from {info.name}): {str(exc).splitlines()[0]}; build the model for "
                        f"{info.channels} input channels and this image size, or resize the data") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        return
    if logits.shape[1] != info.num_classes:
        raise DataError(f"the model outputs shape {tuple(logits.shape)} but {info.name} has "
                        f"{info.num_classes} classes; build it with num_classes={info.num_classes}")
