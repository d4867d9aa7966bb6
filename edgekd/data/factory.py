"""A user's own datasets from a ``package.module:function`` that returns ``(train, val)`` or ``(train, val, test)``."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from edgekd.data.datasets import DataInfo
from edgekd.data.objects import count_classes
from edgekd.data.splits import Sources
from edgekd.errors import DataError
from edgekd.imports import import_object

CONTRACT = ("a data factory must return (train_dataset, val_dataset[, test_dataset]) or a dict with 'train', 'val' "
            "and optionally 'test', 'classes', 'num_classes', 'mean', 'std'; items are (image C×H×W tensor, int label)")


def load_factory(spec: str) -> Sources:
    """Call the factory and describe its data from the first training item.

    uint8 items are normalized by edgekd like its own data (mean/std from the factory, or 0.5);
    float items are taken as model-ready and passed through unchanged.
    """
    result = import_object(spec, what="data factory")()
    if isinstance(result, dict):
        train, val, test, extra = result.get("train"), result.get("val"), result.get("test"), result
    elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
        (train, val, test), extra = (*result, None)[:3], {}
    else:
        raise DataError(f"{spec} returned {type(result).__name__}; {CONTRACT}")
    if not all(isinstance(part, Dataset) for part in (train, val, *([test] if test is not None else []))):
        raise DataError(f"{spec} did not return torch Datasets; {CONTRACT}")
    if any(len(part) == 0 for part in (train, val, *([test] if test is not None else []))):
        raise DataError(f"{spec} returned an empty dataset (train {len(train)}, val {len(val)} items"
                        f"{'' if test is None else f', test {len(test)} items'})")
    image, _ = train[0]
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise DataError(f"{spec}: items must be (C×H×W tensor, label), got {type(image).__name__}; {CONTRACT}")
    is_uint8 = image.dtype == torch.uint8
    channels = image.shape[0]
    classes = tuple(extra.get("classes", ()))
    num_classes = len(classes) or int(extra.get("num_classes", 0)) or count_classes(val)
    default = (0.5,) * channels if is_uint8 else (0.0,) * channels
    info = DataInfo(name=f"factory:{spec}", num_classes=num_classes, channels=channels,
                    image_size=(image.shape[1], image.shape[2]),
                    mean=tuple(extra.get("mean", default)),
                    std=tuple(extra.get("std", (0.5 if is_uint8 else 1.0,) * channels)),
                    scale=1 / 255 if is_uint8 else 1.0, classes=classes, ready=not is_uint8)
    return Sources(train, val, info, test)

