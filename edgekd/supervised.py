"""The supervised term of every training: the user's ``loss(outputs, targets)``, or cross-entropy.

Cross-entropy (with optional label smoothing) is the default; it takes a model that returns one
tensor of class scores on axis 1, so it serves classifiers ((N, C) against (N,) labels) and
segmenters ((N, C, H, W) against (N, H, W) masks) alike. A model with several outputs (a tuple or
dict, e.g. class and box heads) needs the user's own loss. Training, distillation's label term
and recovery all call the same :class:`SupervisedLoss`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from edgekd.errors import ConfigError, UserFunctionError
from edgekd.metrics import callable_fingerprint, callable_name


class SupervisedLoss:
    """``loss(outputs, targets)`` checked: a finite scalar tensor, or one :class:`UserFunctionError` line."""

    def __init__(self, loss: Callable | None = None, *, label_smoothing: float = 0.0):
        if loss is not None and not callable(loss):
            raise ConfigError(f"loss must be a callable loss(outputs, targets) -> scalar tensor, not "
                              f"{type(loss).__name__}")
        self.loss, self.label_smoothing = loss, label_smoothing
        self.name = callable_name(loss) if loss is not None else "cross-entropy"

    @property
    def is_default(self) -> bool:
        return self.loss is None

    def fingerprint(self) -> str:
        """The loss's name and a hash of its code: what a resumed run or a cached teacher must match."""
        return self.name if self.loss is None else callable_fingerprint(self.loss)

    def __call__(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        if self.loss is None:
            if not isinstance(outputs, torch.Tensor):
                raise UserFunctionError(f"cross-entropy, the default loss, needs a model that returns one tensor of "
                                        f"class scores; this one returns a {type(outputs).__name__}: pass your own "
                                        "loss(outputs, targets) (edgekd.compress(..., loss=...))")
            return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)
        try:
            value = self.loss(outputs, targets)
        except Exception as exc:
            raise UserFunctionError(f"loss {self.name} raised {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            what = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else \
                f"a {type(value).__name__}"
            raise UserFunctionError(f"loss {self.name} returned {what}; return a scalar tensor (autograd flows "
                                    "through it)")
        if value.device.type == "cpu" and not torch.isfinite(value.detach()).all():  # on a GPU: where the loop reads losses
            raise UserFunctionError(f"loss {self.name} returned {value.item()}; it must stay finite (check it for "
                                    "log(0) or division by zero, or lower the learning rate)")
        return value.reshape(())


def as_supervised(loss: Callable | SupervisedLoss | None, *, label_smoothing: float = 0.0) -> SupervisedLoss:
    return loss if isinstance(loss, SupervisedLoss) else SupervisedLoss(loss, label_smoothing=label_smoothing)
