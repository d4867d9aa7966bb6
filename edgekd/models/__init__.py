"""The model zoo: a registry of small vision models for edge targets, and users' own models.

``create_model(name, in_channels=, num_classes=, input_size=)`` builds a zoo model;
``build_model(spec, info)`` also accepts ``package.module:factory``. Every zoo model has a
``blocks`` attribute naming its stage boundaries (module names), used by feature distillation.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from functools import partial

from torch import nn

from edgekd.errors import UnknownNameError
from edgekd.models.cnn import PlainCNN
from edgekd.models.mobilenetv2 import MobileNetV2
from edgekd.models.resnet import resnet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": partial(PlainCNN, width=32, depth3=1),
    "cnn-small": partial(PlainCNN, width=16, depth3=1),
    "cnn-tiny": partial(PlainCNN, width=8, depth3=1),
    "cnn-wide": partial(PlainCNN, width=48, depth3=2),
    "resnet8": partial(resnet, 8),
    "resnet14": partial(resnet, 14),
    "resnet20": partial(resnet, 20),
    "resnet32": partial(resnet, 32),
    "resnet56": partial(resnet, 56),
    "resnet8x4": partial(resnet, 8, wide=True),
    "resnet14x4": partial(resnet, 14, wide=True),
    "resnet20x4": partial(resnet, 20, wide=True),
    "resnet32x4": partial(resnet, 32, wide=True),
    "mobilenetv2": partial(MobileNetV2, width=1.0),
    "mobilenetv2-0.5": partial(MobileNetV2, width=0.5),
    "mobilenetv2-0.35": partial(MobileNetV2, width=0.35),
}


def list_models(pattern: str = "*") -> list[str]:
    """Zoo model names matching a shell-style pattern, e.g. ``list_models('resnet*')``."""
    return sorted(n for n in MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, *, in_channels: int = 3, num_classes: int = 10,
                 input_size: tuple[int, int] = (32, 32), **kwargs) -> nn.Module:
    """Build a zoo model by name, for images of ``in_channels`` × ``input_size``."""
    if name not in MODELS:
        raise UnknownNameError("model", name, MODELS)
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, input_size=tuple(input_size), **kwargs)


def model_blocks(model: nn.Module) -> tuple[str, ...]:
    """The names of a model's stage boundaries (empty for models that do not declare them)."""
    return tuple(getattr(model, "blocks", ()))
