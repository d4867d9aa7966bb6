"""Channel importance criteria by name: which filters a structured pruning step removes first.

Each maps to a torch-pruning importance over a whole dependency group (a conv's filters plus
the BatchNorm, consumers and residual partners that must lose the same channels):

* ``l1`` / ``l2``: filter weight magnitude (Li et al. 2017, "Pruning Filters for Efficient ConvNets").
* ``bn-scale``: |γ| of the BatchNorm after the conv (Liu et al. 2017, "Network Slimming").
* ``taylor``: first-order Taylor estimate of the loss change, |w · ∂L/∂w|, from gradients on
  real training batches (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning").
  The gradients are computed on the run's device (:mod:`edgekd.device`) and come back with the model.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from edgekd import device as devices
from edgekd.errors import ConfigError


class Importance(str, enum.Enum):
    L1 = "l1"
    L2 = "l2"
    BN_SCALE = "bn-scale"
    TAYLOR = "taylor"

    @property
    def needs_gradients(self) -> bool:
        return self is Importance.TAYLOR


def make_importance(kind: Importance) -> tp.importance.Importance:
    """The torch-pruning importance object for ``kind``."""
    return {
        Importance.L1: lambda: tp.importance.MagnitudeImportance(p=1),
        Importance.L2: lambda: tp.importance.MagnitudeImportance(p=2),
        Importance.BN_SCALE: tp.importance.BNScaleImportance,
        Importance.TAYLOR: tp.importance.TaylorImportance,
    }[kind]()


def accumulate_gradients(model: nn.Module, loader: DataLoader, batches: int, *,
                         device: torch.device | None = None) -> None:
    """Leave ∂CE/∂w summed over ``batches`` training batches in every parameter's ``.grad``.

    Computed on ``device`` (default: the run's); the model and its gradients end where the model was.
    """
    was_training = model.training
    model.eval()  # BatchNorm statistics stay as trained
    model.zero_grad(set_to_none=True)
    with devices.placed(model, device) as device:
        for i, (images, labels, *_) in enumerate(loader):
            if i == batches:
                break
            images, labels = devices.to_device((images, labels), device, non_blocking=True)
            outputs = model(images)
            if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2 or labels.dim() != 1:
                raise ConfigError("taylor importance scores channels by the gradient of cross-entropy on class "
                                  "scores, and this model's outputs or targets are not (N, classes) and (N,): "
                                  "prune it with importance l1 or l2")
            F.cross_entropy(outputs, labels).backward()
    model.train(was_training)


