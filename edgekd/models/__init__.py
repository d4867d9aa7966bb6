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

from edgekd.errors import ConfigError, EdgekdError, UnknownNameError
from edgekd.models.cnn import PlainCNN
from edgekd.models.imagenet import resnet_imagenet
from edgekd.models.mobilenetv2 import MobileNetV2
from edgekd.models.mobilenetv3 import MobileNetV3
from edgekd.models.resnet import resnet
from edgekd.models.unet import UNet
from edgekd.registry import register

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": partial(PlainCNN, width=32, depth=2, stem_depth=1),
    "cnn-small": partial(PlainCNN, width=16, depth=2, stem_depth=1),
    "cnn-tiny": partial(PlainCNN, width=8, depth=2, stem_depth=1),
    "cnn-wide": partial(PlainCNN, width=48, depth=2, stem_depth=2),
    "resnet8": partial(resnet, depth=8),
    "resnet14": partial(resnet, depth=14),
    "resnet20": partial(resnet, depth=20),
    "resnet32": partial(resnet, depth=32),
    "resnet56": partial(resnet, depth=56),
    "resnet8x4": partial(resnet, depth=8, width=64, stem=32),
    "resnet14x4": partial(resnet, depth=14, width=64, stem=32),
    "resnet20x4": partial(resnet, depth=20, width=64, stem=32),
    "resnet32x4": partial(resnet, depth=32, width=64, stem=32),
    "mobilenetv2": partial(MobileNetV2, width=1.0),
    "mobilenetv2-0.5": partial(MobileNetV2, width=0.5),
    "mobilenetv2-0.35": partial(MobileNetV2, width=0.35),
    # ImageNet shapes (224 px, all strides): the architectures published device latencies are measured on
    "resnet18-imagenet": partial(resnet_imagenet, depth=18, width=64),
    "resnet50-imagenet": partial(resnet_imagenet, depth=50, width=64),
    "mobilenetv2-imagenet": partial(MobileNetV2, width=1.0, skip=0),
    "mobilenetv3-small": partial(MobileNetV3, variant="small", width=1.0),
    "mobilenetv3-large": partial(MobileNetV3, variant="large", width=1.0),
    # segmentation: (N, num_classes, H, W) scores per pixel (judge them with metric="miou")
    "unet-small": partial(UNet, width=16),
    "unet-tiny": partial(UNet, width=8),
}


def register_model(name: str, factory: Callable[..., nn.Module] | None = None, *, override: bool = False) -> Callable:
    """Add a model factory to the zoo, so ``name`` works wherever a zoo name does (``--teacher``,
    ``Distill(student=name)``, recipes): as a decorator, ``@register_model(name)``, or called with the factory,
    ``register_model(name, partial(MyNet, width=16))``. The factory is called as ``factory(in_channels=,
    num_classes=, input_size=)`` with the data's shape and returns an ``nn.Module``; a ``blocks`` attribute
    (module names of its stage boundaries) lets feature distillation pair its layers."""
    def add(factory: Callable) -> Callable:
        if not callable(factory):
            raise ConfigError(f"register_model('{name}') takes a class or function that builds a model, "
                              f"not {factory!r}")
        register(MODELS, "model", name, factory, override=override)
        return factory
    return add if factory is None else add(factory)


def model_task(model: nn.Module) -> str:
    """What a model's output is: ``classification`` ((N, C) scores) or ``segmentation`` ((N, C, H, W))."""
    return getattr(model, "task", "classification")


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


def derive_model(name: str, *, width: float = 1.0, depth: int | None = None, in_channels: int = 3,
                 num_classes: int = 10, input_size: tuple[int, int] = (32, 32)) -> nn.Module:
    """A model of zoo model ``name``'s family, ``width`` times as wide and with ``depth`` if given.

    ``derive_model('resnet56', depth=20)`` is resnet20; ``derive_model('cnn', width=0.5)`` is
    cnn-small; ``width=1`` and no depth is the same architecture (born-again distillation).
    """
    if name not in MODELS:
        raise UnknownNameError("model", name, MODELS)
    factory = MODELS[name]
    if not isinstance(factory, partial):
        raise EdgekdError(f"{name} is a registered factory edgekd cannot resize: derive works on the zoo's built-in "
                          f"families; pass the student itself (Distill(student=...)) instead")
    kwargs = dict(factory.keywords)
    base = kwargs.get("width")
    kwargs["width"] = base * width if isinstance(base, float) else max(1, round((base or 16) * width))
    if depth is not None:
        if "depth" not in kwargs:
            raise EdgekdError(f"{name} has no depth to change; derive it by width only")
        kwargs["depth"] = depth
    return factory.func(**kwargs, in_channels=in_channels, num_classes=num_classes, input_size=tuple(input_size))
