"""Image files read from disk per item: datasets larger than memory.

:class:`ImageFiles` keeps only the list of files; each item is decoded when asked for (in a
DataLoader worker process, see :func:`edgekd.data.loader.make_loader`), cropped and resized to
the model's input size (:mod:`edgekd.data.transforms`) and returned as uint8, so memory does not
grow with the dataset. Items are deterministic (resize + center crop) unless the dataset is an
:meth:`ImageFiles.augmented` view; there every item's crop and flip are drawn from a generator
seeded by (seed, epoch, index), so a resumed training sees exactly the images the uninterrupted
one saw, with any number of workers.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekd.data.transforms import CropSettings, read_image
from edgekd.errors import DataError

MODES = {1: "L", 3: "RGB"}
MAX_DEFAULT_WORKERS = 8


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(processes_per_machine: int = 1) -> int:
    """Decoding worker processes per training process: the cores left after the training process itself."""
    cores = available_cores() // max(1, processes_per_machine)
    return max(1, min(MAX_DEFAULT_WORKERS, cores - 1))


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_FROM_BYTES = 128 * 1024


def worker_init(_worker_id: int) -> None:
    """In each decoding worker: allocations of 128 KB and more (decoded images, batches) get their own
    mapping, returned to the system when freed.

    glibc otherwise raises its mmap threshold after the first large free and serves image-sized
    buffers from the heap, which fragments: measured here, a worker feeding a slower training
    process grew by about one batch of images per batch (to 0.9 GB over 20,000 images), and stays
    flat with this setting. Elsewhere than glibc this does nothing.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES)
    except (OSError, AttributeError):
        pass


class ImageFiles(Dataset):
    """``(uint8 C×H×W tensor, label)`` decoded from ``files`` per item, at ``size``."""

    def __init__(self, files: list[tuple[Path, int]], *, size: tuple[int, int], channels: int = 3,
                 workers: int | None = None):
        if channels not in MODES:
            raise DataError(f"channels must be 1 or 3 for image folders, not {channels}")
        self.paths = [str(path) for path, _ in files]
        self.targets = [int(label) for _, label in files]  # read by class counting and samplers, never decoded
        self.size, self.channels, self.workers = tuple(size), channels, workers
        self.crop: CropSettings | None = None  # set on an augmented view
        self.seed, self.epoch = 0, 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = None
        if self.crop is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            image = read_image(Path(self.paths[index]), MODES[self.channels], self.size, rng=rng,
                               settings=self.crop or CropSettings())
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for truncated or foreign files
            raise DataError(f"cannot read image {self.paths[index]} ({exc}); remove or replace it") from None
        return image, self.targets[index]

    def subset(self, size: int | None, *, seed: int = 0) -> "ImageFiles":
        """A fixed random subset of ``size`` files (all of them when ``size`` is None or larger)."""
        if size is None or size >= len(self):
            return self
        return self.take(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size].tolist())

    def take(self, indices: list[int]) -> "ImageFiles":
        """A view of the files at ``indices``."""
        view = copy.copy(self)
        view.paths, view.targets = [self.paths[i] for i in indices], [self.targets[i] for i in indices]
        return view

    def augmented(self, crop: CropSettings, *, seed: int) -> "ImageFiles":
        """A view of the same files with random-resized-crop + flip, seeded per (seed, epoch, index)."""
        view = copy.copy(self)
        view.crop, view.seed, view.epoch = crop, seed, 0
        return view

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s augmentation (workers get the dataset afresh at each epoch's start)."""
        self.epoch = epoch

    def fingerprint(self) -> str:
        """Files, labels, sizes and modification times: changes when the data does, without decoding."""
        digest = hashlib.sha256(repr((self.size, self.channels)).encode())
        for path, label in zip(self.paths, self.targets):
            stat = os.stat(path)
            digest.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]
