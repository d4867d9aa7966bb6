"""The user's own data objects: ``DataLoader``s or ``Dataset``s yielding ``(image, label)``, as edgekd data.

edgekd batches, shuffles and shards the datasets itself (each stage has its own batch size, and
a resumed training must see the same batches), so a DataLoader contributes its dataset. Float
images are taken as model-ready: edgekd applies no normalization, and records the raw-pixel
normalization for ``deploy/`` only when the user gives it. uint8 images are normalized like
edgekd's own data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from torch.utils.data._utils.collate import default_collate

from edgekd.data.datasets import DataBundle, DataInfo, Normalization
from edgekd.data.splits import SELECTION, Sources, assign_roles, hold_out
from edgekd.errors import DataError

ITEMS = "items must be (image C×H×W tensor, target: an int label or a tensor such as a mask or padded boxes)"


def dataset_of(data: Any, role: str) -> Dataset:
    """The map-style dataset behind a DataLoader or Dataset; one clear error for anything else."""
    if isinstance(data, DataLoader):
        if data.collate_fn is not default_collate:
            raise DataError(f"the {role} DataLoader has its own collate_fn; edgekd batches the loader's dataset "
                            f"itself, so give a Dataset (or a DataLoader over one) whose {ITEMS}")
        data = data.dataset
    if isinstance(data, IterableDataset):
        raise DataError(f"the {role} data is an IterableDataset; edgekd needs a map-style Dataset (len and "
                        "indexing) to shuffle, resume and hold out images")
    if not isinstance(data, Dataset):
        raise DataError(f"{role} must be a torch DataLoader, a Dataset, or a data source name "
                        f"('fashion-mnist', a folder, package.module:function), not {type(data).__name__}")
    if len(data) == 0:
        raise DataError(f"the {role} data is empty")
    return data


def bundle_from_objects(train: Any, val: Any | None, test: Any | None = None, *, num_classes: int | None = None,
                        preprocessing: dict | None = None, selection: float | int = SELECTION) -> DataBundle:
    """A :class:`DataBundle` over the user's datasets, in the roles of :mod:`edgekd.data.splits`.

    ``val`` and ``test``: val selects, test reports. ``val`` alone: it reports, and ``selection`` of
    ``train`` (a share or a count, seeded) is held out to select. Neither: both are held out of ``train``.
    ``num_classes`` (e.g. the model's output width) avoids reading every label to count classes.
    """
    train_set = dataset_of(train, "training")
    if val is None and test is not None:
        raise DataError("test data goes with val data (val then chooses, test reports); pass val too")
    if val is None:
        train_set, val_set = hold_out(train_set, selection, seed=1)  # the report split; selection is seed 0's
    else:
        val_set = dataset_of(val, "validation")
    test_set = dataset_of(test, "test") if test is not None else None
    image, target = first_item(train_set)
    classes = tuple(getattr(train_set, "classes", ()) or ())
    num_classes = num_classes or len(classes) or target_classes(target, val_set)
    channels, height, width = image.shape
    if image.dtype == torch.uint8:
        pixels = normalization(preprocessing, channels) or Normalization((0.5,) * channels, (0.5,) * channels)
        info = DataInfo(name="user data", num_classes=num_classes, channels=channels, image_size=(height, width),
                        mean=pixels.mean, std=pixels.std, scale=pixels.scale, classes=classes)
    else:
        info = DataInfo(name="user data", num_classes=num_classes, channels=channels, image_size=(height, width),
                        mean=(0.0,) * channels, std=(1.0,) * channels, scale=1.0, classes=classes, ready=True,
                        pixels=normalization(preprocessing, channels))
    return assign_roles(Sources(train_set, val_set, info, test_set, "val" if val is not None else "held-out val"),
                        selection=selection)


def as_bundle(data: Any, val: Any | None = None) -> DataBundle:
    """``data`` as edgekd data: a :class:`DataBundle` as it is, else the user's loaders or datasets."""
    return data if isinstance(data, DataBundle) else bundle_from_objects(data, val)


def first_item(dataset: Dataset) -> tuple[torch.Tensor, int | torch.Tensor]:
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"the dataset's items are {type(item).__name__}; {ITEMS}")
    image, label = item[0], item[1]
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DataError(f"the dataset's images are {shape}; {ITEMS} (a transform such as ToTensor makes one)")
    if isinstance(label, torch.Tensor) and label.dim() > 0:
        return image, label  # a dense or structured target, judged by the run's metric and loss
    try:
        int(label)
    except (TypeError, ValueError):
        raise DataError(f"the dataset's labels are {type(label).__name__}; {ITEMS}") from None
    return image, int(label)


def target_classes(target: int | torch.Tensor, dataset: Dataset) -> int:
    """Classes behind the targets: counted for int labels; for tensor targets (masks, boxes) 0, unknown (the model
    defines its outputs, the metric and the loss judge them)."""
    return 0 if isinstance(target, torch.Tensor) else count_classes(dataset)


LABEL_SCAN_LIMIT = 2000  # items whose labels may be read one by one (each read decodes an image)


def count_classes(dataset: Dataset) -> int:
    """Classes in a dataset, without decoding images where it can be helped.

    From its ``classes`` or its ``targets`` (through Subsets); else, for a small dataset, by reading
    every label; a large one without either is an error that says what to give.
    """
    classes = getattr(dataset, "classes", None)
    if classes:
        return len(classes)
    targets = dataset_targets(dataset)
    if targets is not None:
        return int(max(int(label) for label in targets)) + 1
    if len(dataset) > LABEL_SCAN_LIMIT:
        raise DataError(f"cannot count the classes of a {len(dataset)}-item dataset without decoding every image: "
                        "give it a 'targets' (labels) or 'classes' attribute, or return 'num_classes' (data "
                        "factory) / pass a model whose output width is the class count")
    return int(max(int(dataset[i][1]) for i in range(len(dataset)))) + 1


def dataset_targets(dataset: Dataset):
    """The labels a dataset declares (``targets``), through Subsets; None when it declares none."""
    if isinstance(dataset, Subset):
        inner = dataset_targets(dataset.dataset)
        return None if inner is None else [inner[i] for i in dataset.indices]
    return getattr(dataset, "targets", None)


def normalization(preprocessing: dict | None, channels: int) -> Normalization | None:
    """The user's ``{'mean', 'std', 'scale'}`` as a :class:`Normalization`, checked against the channel count."""
    if preprocessing is None:
        return None
    unknown = set(preprocessing) - {"mean", "std", "scale"}
    if unknown or not {"mean", "std"} <= set(preprocessing):
        raise DataError(f"preprocessing takes 'mean', 'std' and optionally 'scale' (default 1/255), got "
                        f"{sorted(preprocessing)}")
    mean, std = tuple(map(float, preprocessing["mean"])), tuple(map(float, preprocessing["std"]))
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"preprocessing has {len(mean)} means and {len(std)} stds for {channels}-channel images")
    return Normalization(mean, std, float(preprocessing.get("scale", 1 / 255)))
