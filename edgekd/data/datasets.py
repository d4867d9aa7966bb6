"""The dataset types edgekd trains on, and what a model needs to know about them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from edgekd.data.transforms import EVAL_CROP_FRACTION


@dataclass(frozen=True)
class Normalization:
    """How raw pixels become the model's input: ``(pixel * scale - mean) / std`` per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255


UNKNOWN_PREPROCESSING = ("the images came already normalized from the user's own data pipeline, so edgekd does "
                         "not know how raw pixels become the model's input; pass preprocessing={'mean': ..., "
                         "'std': ..., 'scale': 1/255} to edgekd.compress(), or fill in scale, mean and std here")


@dataclass(frozen=True)
class DataInfo:
    """What a model and an ONNX consumer need to know about the data.

    Images reach the model as float NCHW: ``(pixel * scale - mean) / std`` per channel,
    where pixels are uint8 (``scale = 1/255``); ``scale = 1.0`` with mean 0 and std 1 means
    the user's factory already produced model-ready tensors.
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255
    classes: tuple[str, ...] = ()
    ready: bool = False  # items are model-ready tensors from the user's pipeline (edgekd applies nothing)
    pixels: Normalization | None = None  # with ``ready``: the user's raw-pixel normalization, if given
    # how an image of any size becomes ``image_size`` (None: a plain resize); out of repr, so cache keys stay
    resize: str | None = field(default=None, repr=False)

    def preprocessing(self) -> dict:
        """The exact recipe to turn an image into the ONNX model's input (for the report and deploy/)."""
        spec = {"input_shape": ["batch", self.channels, *self.image_size], "layout": "NCHW", "dtype": "float32",
                "formula": "input = (pixel * scale - mean) / std, per channel", "classes": list(self.classes)}
        if self.resize is not None:
            spec["resize"] = {"method": self.resize, "shorter_side": max(self.image_size) / EVAL_CROP_FRACTION,
                              "crop": list(self.image_size), "interpolation": "bilinear"}
        pixels = Normalization(self.mean, self.std, self.scale) if not self.ready else self.pixels
        if pixels is None:
            return {**spec, "known": False, "scale": None, "mean": None, "std": None, "note": UNKNOWN_PREPROCESSING}
        return {**spec, "known": True, "scale": pixels.scale, "mean": list(pixels.mean), "std": list(pixels.std)}


class TensorImages(Dataset):
    """Images held in memory as one uint8 (or float) N×C×H×W tensor, with int64 labels.

    ``__getitems__`` hands whole batches to the DataLoader, so an epoch costs no per-image
    Python work.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]

    def subset(self, size: int | None, *, seed: int = 0) -> "TensorImages":
        """A fixed random subset of ``size`` items (all of them when ``size`` is None or larger)."""
        if size is None or size >= len(self):
            return self
        return self.take(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size])

    def take(self, indices) -> "TensorImages":
        """The items at ``indices``, as tensors of their own."""
        index = torch.as_tensor(indices)
        return TensorImages(self.images[index], self.labels[index])


@dataclass
class DataBundle:
    """A run's data in its three roles (:mod:`edgekd.data.splits`), with their shared description.

    ``train`` fits weights; ``selection`` scores every choice; ``report`` (a sealed
    :class:`~edgekd.data.splits.ReportSplit`) grades the result once every choice is final.
    ``splits`` says, per role, where its items come from (for the report).
    """

    train: Dataset
    selection: Dataset
    report: Dataset
    info: DataInfo
    splits: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A short hash that changes when the data a model is built from changes (name, sizes, labels, sampled
        pixels of the train and selection splits; the report split is no input to any stage)."""
        digest = hashlib.sha256(repr(self.info).encode())
        for part in (self.train, self.selection):
            digest.update(str(len(part)).encode())
            if hasattr(part, "fingerprint"):  # streamed files: names, sizes and dates, nothing decoded
                digest.update(part.fingerprint().encode())
            elif isinstance(part, TensorImages):
                digest.update(part.labels.numpy().tobytes())
                digest.update(part.images[::97].contiguous().numpy().tobytes())
            else:  # a user's dataset: a few items from across it (decoding all of them would cost an epoch)
                for index in sorted({0, len(part) // 3, 2 * len(part) // 3, len(part) - 1}):
                    image, label, *_ = part[index]
                    digest.update(torch.as_tensor(image).contiguous().numpy().tobytes())
                    if isinstance(label, torch.Tensor) and label.dim() > 0:  # a mask or padded boxes
                        digest.update(label.contiguous().numpy().tobytes())
                    else:
                        digest.update(str(int(label)).encode())
        return digest.hexdigest()[:16]
