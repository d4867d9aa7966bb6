"""A user's own images in the ImageFolder layout: ``ROOT/{train,val}/CLASS/*.png|jpg``, and ``ROOT/test`` if any.

With ``val/`` and ``test/`` both present, val selects and test reports (:mod:`edgekd.data.splits`).

Two ways to hold them (:class:`Storage`): decoded once into one uint8 tensor (``memory``: fast
for small datasets, resized to the first image's size or ``image_size``), or read from disk per
item in DataLoader workers (``stream``: :class:`edgekd.data.streaming.ImageFiles`, at ``image_size``,
default 224×224; memory does not grow with the dataset). ``auto`` decodes into memory when the
decoded images fit ``memory_budget_mb``, else streams.
"""

from __future__ import annotations

import enum
from pathlib import Path

import numpy as np
import torch

from edgekd.data.datasets import DataInfo, TensorImages
from edgekd.data.splits import Sources
from edgekd.data.streaming import ImageFiles
from edgekd.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
VAL_NAMES = ("val", "valid", "validation", "test")
LAYOUT_HINT = "expected ROOT/train/CLASS/image.png and ROOT/val/CLASS/image.png"
STREAM_SIZE = (224, 224)  # streamed images without an image_size: the ImageNet input size
# Streamed RGB images are normalized with ImageNet's statistics, which pretrained weights
# (torchvision, timm) expect; computing a folder's own would mean decoding it.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Storage(str, enum.Enum):
    AUTO = "auto"  # memory when the decoded images fit the budget, else stream
    MEMORY = "memory"
    STREAM = "stream"


def is_imagefolder(root: Path) -> bool:
    return (root / "train").is_dir() and any((root / name).is_dir() for name in VAL_NAMES)


def load_imagefolder(root: str | Path, *, image_size: tuple[int, int] | None = None, channels: int = 3,
                     storage: Storage = Storage.AUTO, memory_budget_mb: float = 1024,
                     workers: int | None = None) -> Sources:
    """The train, val (and test) images of ``root``, in memory or streamed from disk (see :class:`Storage`)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; {LAYOUT_HINT}")
    held = [root / n for n in VAL_NAMES if (root / n).is_dir()]
    if not (root / "train").is_dir() or not held:
        raise DataError(f"{root} has no train/ and val/ folders; {LAYOUT_HINT}")
    val_dir, test_dir = held[0], (held[-1] if len(held) > 1 and held[-1].name == "test" else None)
    classes = class_names(root / "train")
    for folder in filter(None, (val_dir, test_dir)):
        if set(class_names(folder)) - set(classes):
            raise DataError(f"{folder} has classes that train/ lacks: "
                            f"{sorted(set(class_names(folder)) - set(classes))}; every class needs training images")
    sets = {"train": list_images(root / "train", classes), "val": list_images(val_dir, classes)}
    if test_dir is not None:
        sets["test"] = list_images(test_dir, classes)
    size = image_size or first_image_size(sets["train"][0][0])
    count = sum(map(len, sets.values()))
    if choose_storage(storage, count, size, channels, memory_budget_mb) is Storage.STREAM:
        return stream_imagefolder(root, classes, sets, image_size=image_size or STREAM_SIZE,
                                  channels=channels, workers=workers, val_name=val_dir.name)
    decoded = {name: decode_all(files, size, channels) for name, files in sets.items()}
    mean, std = channel_stats(decoded["train"].images)
    info = DataInfo(name=f"imagefolder:{root}", num_classes=len(classes), channels=channels,
                    image_size=size, mean=mean, std=std, classes=tuple(classes))
    return Sources(decoded["train"], decoded["val"], info, decoded.get("test"), val_name=val_dir.name)


def choose_storage(storage: Storage, count: int, size: tuple[int, int], channels: int,
                   budget_mb: float) -> Storage:
    """``memory`` or ``stream``: ``auto`` keeps images in memory only when all of them decoded fit the budget."""
    storage = Storage(storage)
    if storage is not Storage.AUTO:
        return storage
    decoded_mb = count * channels * size[0] * size[1] / 2**20
    return Storage.MEMORY if decoded_mb <= budget_mb else Storage.STREAM


def stream_imagefolder(root: Path, classes: list[str], sets: dict[str, list], *, image_size: tuple[int, int],
                       channels: int, workers: int | None, val_name: str) -> Sources:
    """Datasets that decode per item (training: random-resized-crop + flip; evaluation: resize + center crop)."""
    files = {name: ImageFiles(items, size=image_size, channels=channels, workers=workers)
             for name, items in sets.items()}
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    info = DataInfo(name=f"imagefolder:{root}", num_classes=len(classes), channels=channels,
                    image_size=tuple(image_size), mean=mean, std=std, classes=tuple(classes),
                    resize="shorter-side-then-center-crop")
    return Sources(files["train"], files["val"], info, files.get("test"), val_name=val_name)


def class_names(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{folder} has no class folders; {LAYOUT_HINT}")
    return classes


def list_images(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    files = [(p, label) for label, name in enumerate(classes) if (folder / name).is_dir()
             for p in sorted((folder / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); {LAYOUT_HINT}")
    return files


def first_image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.height, img.width


def decode_all(files: list[tuple[Path, int]], size: tuple[int, int], channels: int) -> TensorImages:
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"channels must be 1 or 3 for image folders, not {channels}")
    images = np.empty((len(files), channels, *size), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert(mode).resize((size[1], size[0]), Image.BILINEAR))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {path} ({exc}); remove or replace it") from None
        images[i] = pixels.reshape(size[0], size[1], channels).transpose(2, 0, 1)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return TensorImages(torch.from_numpy(images), labels)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0-1 scale."""
    x = images[:4096].float().div_(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
