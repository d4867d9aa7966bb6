"""Batches ready for a model: normalization and augmentation applied to whole batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edgekd.data.datasets import DataInfo


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop after zero padding, random horizontal flip."""

    crop_padding: int = 2
    hflip: bool = True


class BatchTransform:
    """Collate items, turn pixels into normalized float NCHW, and augment if asked.

    Works on the whole batch at once (one pad, one gather), which is what makes the
    in-memory datasets fast on a CPU.
    """

    def __init__(self, info: DataInfo, augment: Augment | None = None, *, seed: int = 0):
        self.mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std).view(1, -1, 1, 1)
        self.scale = info.scale
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch) -> tuple[torch.Tensor, ...]:
        images, labels, *extra = collate(batch)
        x = normalize(images, self.scale, self.mean, self.std)
        if self.augment is not None:
            x = random_crop_flip(x, self.augment, self.generator)
        return (x.contiguous(), labels, *extra)


def collate(batch) -> tuple[torch.Tensor, ...]:
    """(images, labels, *extra) from a ready batch (``__getitems__``) or a list of items."""
    if isinstance(batch, tuple):
        return batch
    images = torch.stack([item[0] for item in batch])
    labels = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.int64)
    extra = [torch.stack([item[i] for item in batch]) for i in range(2, len(batch[0]))]
    return (images, labels, *extra)


def normalize(images: torch.Tensor, scale: float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images.float() * scale - mean) / std


def random_crop_flip(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (after zero padding, in normalized space: pad value = mean) and flip."""
    n, _, h, w = x.shape
    p = augment.crop_padding
    if p > 0:
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * p)
        x = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
        x = x.gather(3, cols)
    if augment.hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle and augmentation depend only on (seed, epoch), so a resumed
    training sees exactly the batches the uninterrupted one would have."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:
        loader.generator.manual_seed(seed * 100003 + epoch)
    if isinstance(loader.collate_fn, BatchTransform):
        loader.collate_fn.generator.manual_seed(seed * 100003 + epoch + 7919)


def make_loader(dataset: Dataset, info: DataInfo, *, batch_size: int, train: bool,
                augment: Augment | None = None, seed: int = 0, distributed: bool = False) -> DataLoader:
    """A DataLoader yielding normalized (images, labels); shuffled and augmented when ``train``."""
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=train)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=False,
        collate_fn=BatchTransform(info, augment if train else None, seed=seed),
        generator=torch.Generator().manual_seed(seed) if train and sampler is None else None,
    )
