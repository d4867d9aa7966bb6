"""Datasets: Fashion-MNIST (default), a user's ImageFolder, or a user's factory function.

``load_data(DataSpec(...))`` returns a :class:`DataBundle`; ``make_loader`` turns one of its
sets into normalized batches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data import idx
from edgekd.data.datasets import DataBundle, DataInfo, TensorImages
from edgekd.data.imagefolder import Storage
from edgekd.data.streaming import ImageFiles
from edgekd.data.loader import Augment, BatchTransform, make_loader
from edgekd.data.splits import SELECTION, ReportSplit, Sources, assign_roles
from edgekd.errors import DataError
from edgekd.imports import is_import_path

__all__ = ["Augment", "BatchTransform", "DataBundle", "DataInfo", "DataSpec", "ImageFiles", "ReportSplit",
           "Storage", "TensorImages", "load_data", "make_loader"]

FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


class DataSpec(BaseModel):
    """Where the data comes from and how much of it to use.

    ``source`` is ``fashion-mnist`` (looked up in the standard places, or in ``path``), ``shapes``
    (a generated segmentation set, :mod:`edgekd.data.shapes`; ``train_subset``/``val_subset`` set its
    sizes, ``image_size`` its side, ``subset_seed`` its seed), a folder (Fashion-MNIST IDX files, or an ImageFolder with train/ and val/), or
    ``package.module:function`` returning ``(train, val)`` or ``(train, val, test)`` datasets.

    ``selection`` is the share (0-1) or count of training items held out to score every choice
    edgekd makes (:mod:`edgekd.data.splits`); with a test set, val selects and nothing is held out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = "fashion-mnist"
    path: str | None = None
    train_subset: int | None = None
    val_subset: int | None = None
    image_size: tuple[int, int] | None = None
    channels: int = 3
    subset_seed: int = 0
    selection: float | int = Field(SELECTION, gt=0)
    selection_seed: int = 0
    storage: Storage = Storage.AUTO  # image folders: memory | stream | auto (memory when it fits the budget)
    memory_budget_mb: float = Field(1024, gt=0)
    workers: int | None = Field(None, ge=0)  # decoding processes for streamed images; None: from the cores


def load_data(spec: DataSpec) -> DataBundle:
    """Load the datasets a spec names, cut to its subsets, in their three roles (train, selection, report)."""
    if isinstance(spec.selection, float) and spec.selection >= 1:
        raise DataError(f"data.selection is a share of the training data below 1 (e.g. 0.1) or a count of items "
                        f"(e.g. 5000), not {spec.selection}")
    sources = load_source(spec)
    cut = lambda part, size: part.subset(size, seed=spec.subset_seed) \
        if isinstance(part, (TensorImages, ImageFiles)) else part  # noqa: E731
    sources = sources._replace(train=cut(sources.train, spec.train_subset), val=cut(sources.val, spec.val_subset),
                               test=None if sources.test is None else cut(sources.test, spec.val_subset))
    return assign_roles(sources, selection=spec.selection, seed=spec.selection_seed)


def load_source(spec: DataSpec) -> Sources:
    from edgekd.data.factory import load_factory
    from edgekd.data.imagefolder import is_imagefolder, load_imagefolder

    if spec.source == "fashion-mnist":
        return load_fashion_mnist(spec.path)
    if spec.source == "shapes":
        from edgekd.data.shapes import load_shapes

        return load_shapes(train=spec.train_subset or 2000, val=spec.val_subset or 500,
                           size=spec.image_size[0] if spec.image_size else 32, seed=spec.subset_seed)
    if is_import_path(spec.source) and not Path(spec.source).exists():
        return load_factory(spec.source)
    folder = Path(spec.source)
    if not folder.exists():
        raise DataError(f"data source '{spec.source}' is neither 'fashion-mnist', an existing folder, "
                        "nor package.module:function")
    if any(folder.glob("*-ubyte.gz")):
        return load_fashion_mnist(folder)  # reports any missing file by name
    if is_imagefolder(folder):
        return load_imagefolder(folder, image_size=spec.image_size, channels=spec.channels, storage=spec.storage,
                                memory_budget_mb=spec.memory_budget_mb, workers=spec.workers)
    raise DataError(f"{folder} holds neither Fashion-MNIST IDX files nor an ImageFolder "
                    "(ROOT/train/CLASS/*.png and ROOT/val/CLASS/*.png)")


def load_fashion_mnist(path: str | Path | None = None) -> Sources:
    """Fashion-MNIST: 60,000 training and 10,000 test images, 1×28×28, 10 classes."""
    folder = idx.find_fashion_mnist(path)
    sets = {}
    for split in ("train", "val"):
        images, labels = idx.load_split(folder, split)
        sets[split] = TensorImages(torch.from_numpy(images.copy()), torch.from_numpy(labels))
    info = DataInfo(name="fashion-mnist", num_classes=10, channels=1, image_size=(28, 28),
                    mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, classes=idx.CLASSES)
    return Sources(train=sets["train"], val=sets["val"], info=info, val_name="test set (t10k)")
