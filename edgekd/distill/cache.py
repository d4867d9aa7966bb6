"""Teacher logits computed once per (teacher, dataset) and memory-mapped from disk.

When training images are not randomly augmented, the teacher sees the same input for a
sample every epoch, so its forward pass need not be repeated: the logits are computed once,
stored as ``.npy`` under the cache folder keyed by teacher weights and data, and handed to the
objective with each batch. They are computed on the run's device (:mod:`edgekd.device`), in
float32, and stored from the CPU; the teacher goes back to the device it came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from edgekd import console
from edgekd import device as devices
from edgekd.atomic import atomic_path
from edgekd.data import DataBundle, TensorImages, make_loader


def model_hash(model: nn.Module) -> str:
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class WithTeacherLogits(Dataset):
    """Training images and labels, plus the teacher's logits for each (as a third batch item)."""

    def __init__(self, images: TensorImages, logits: np.ndarray):
        self.base, self.logits = images, logits

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return image, label, torch.from_numpy(np.array(self.logits[index]))

    def __getitems__(self, indices: list[int]):
        images, labels = self.base.__getitems__(indices)
        return images, labels, torch.from_numpy(np.ascontiguousarray(self.logits[np.asarray(indices)]))


def teacher_logits(teacher: nn.Module, data: DataBundle, cache_dir: Path) -> np.ndarray:
    """The teacher's logits for every training image, in dataset order (memory-mapped)."""
    path = cache_dir / "teacher-logits" / f"{model_hash(teacher)}-{data.fingerprint()}.npy"
    if not path.exists():
        console.info(f"distill: computing teacher logits for {len(data.train)} training images (cached in {path})")
        logits = compute_logits(teacher, make_loader(data.train, data.info, batch_size=512, train=False))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, logits)
    return np.load(path, mmap_mode="r")


def compute_logits(teacher: nn.Module, loader, *, device: torch.device | None = None) -> np.ndarray:
    """``teacher``'s float32 logits for every batch of ``loader``, computed on ``device`` (default: the run's);
    moved there and back outside inference mode (its parameters must stay usable by autograd)."""
    teacher.eval()
    with devices.placed(teacher, device) as device, torch.inference_mode():
        batches = [teacher(images.to(device, non_blocking=True)).float().cpu().numpy() for images, *_ in loader]
    return np.concatenate(batches).astype(np.float32)


def with_cached_logits(teacher: nn.Module, data: DataBundle, cache_dir: Path) -> DataBundle:
    """The same data with teacher logits attached to each training sample."""
    if not isinstance(data.train, TensorImages):
        return data
    logits = teacher_logits(teacher, data, cache_dir)
    return dataclasses.replace(data, train=WithTeacherLogits(data.train, logits))
