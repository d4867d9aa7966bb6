"""Batches ready for a model: normalization and augmentation applied to whole batches.

In-memory images are batched in this process (one gather per batch); training on CUDA, the
batch crosses to the GPU as uint8 and is normalized and augmented there (a quarter of the bytes
of float32, and no per-pixel work on the CPU). Streamed image files
(:class:`edgekd.data.streaming.ImageFiles`) are decoded, cropped and normalized in DataLoader
worker processes, into pinned memory when training on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from edgekd import device as devices
from edgekd.data.datasets import DataInfo
from edgekd.data.streaming import ImageFiles, default_workers, worker_init
from edgekd.data.transforms import CropSettings


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop after zero padding, random horizontal flip."""

    crop_padding: int = 2
    hflip: bool = True


class BatchTransform:
    """Collate items, turn pixels into normalized float NCHW, and augment if asked.

    Works on the whole batch at once (one pad, one gather), which is what makes the
    in-memory datasets fast on a CPU. With ``device`` set (a GPU), the batch moves there first
    and the arithmetic runs there; the random draws stay on the CPU generator, so a batch is
    augmented the same way on either device.
    """

    def __init__(self, info: DataInfo, augment: Augment | None = None, *, seed: int = 0,
                 device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self.mean = torch.tensor(info.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, device=self.device).view(1, -1, 1, 1)
        self.scale = info.scale
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch) -> tuple[torch.Tensor, ...]:
        images, labels, *extra = collate(batch)
        if self.device.type != "cpu":  # pinned, so the copy queues behind the GPU's work instead of waiting for it
            batch = [t.pin_memory() if isinstance(t, torch.Tensor) else t for t in (images, labels, *extra)]
            images, labels, *extra = devices.to_device(batch, self.device, non_blocking=True)
        x = normalize(images, self.scale, self.mean, self.std)
        if self.augment is not None and is_mask(labels, x):  # a segmentation mask moves with its image
            stacked = random_crop_flip(torch.cat([x, labels.unsqueeze(1).to(x.dtype) + MASK_SHIFT], 1), self.augment,
                                       self.generator)
            x, mask = stacked[:, :-1], stacked[:, -1].round().long() - MASK_SHIFT
            labels = torch.where(mask < 0, torch.full_like(mask, IGNORE), mask)
        elif self.augment is not None:
            x = random_crop_flip(x, self.augment, self.generator)
        return (x.contiguous(), labels, *extra)


IGNORE = -100  # mask pixels a crop padded in: cross-entropy's default ignore_index; miou does not score them
MASK_SHIFT = 1  # masks travel with the image as class + 1, so the crop's zero padding reads as -1 (ignored)


def is_mask(labels: torch.Tensor, images: torch.Tensor) -> bool:
    """(N, H, W) integer targets the size of the (N, C, H, W) images: per-pixel classes."""
    return labels.dim() == 3 and labels.shape[1:] == images.shape[2:] and not labels.is_floating_point()


def collate(batch) -> tuple[torch.Tensor, ...]:
    """(images, targets, *extra) from a ready batch (``__getitems__``) or a list of items. Targets are int64 class
    labels, or any tensor (masks, padded boxes) stacked as they are."""
    if isinstance(batch, tuple):
        return batch
    images = torch.stack([item[0] for item in batch])
    first = batch[0][1]
    labels = torch.stack([item[1] for item in batch]) if isinstance(first, torch.Tensor) and first.dim() > 0 \
        else torch.as_tensor([int(item[1]) for item in batch], dtype=torch.int64)
    extra = [torch.stack([item[i] for item in batch]) for i in range(2, len(batch[0]))]
    return (images, labels, *extra)


def normalize(images: torch.Tensor, scale: float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images.float() * scale - mean) / std


def random_crop_flip(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (after zero padding, in normalized space: pad value = mean) and flip."""
    n, _, h, w = x.shape
    p, device = augment.crop_padding, x.device
    if p > 0:
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(device)
        rows = (dy[:, None] + torch.arange(h, device=device)[None, :])[:, None, :, None]
        x = padded.gather(2, rows.expand(n, x.shape[1], h, w + 2 * p))
        cols = (dx[:, None] + torch.arange(w, device=device)[None, :])[:, None, None, :]
        x = x.gather(3, cols.expand(n, x.shape[1], h, w))
    if augment.hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(device)
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
    files = streamed(loader.dataset)
    if files is not None:  # workers receive the dataset afresh at each epoch (workers are not persistent)
        files.set_epoch(epoch)


def streamed(dataset: Dataset) -> ImageFiles | None:
    """The :class:`ImageFiles` behind ``dataset`` (itself, or under a Subset), else None."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset if isinstance(dataset, ImageFiles) else None


def with_files(dataset: Dataset, files: ImageFiles) -> Dataset:
    """``dataset`` with its :class:`ImageFiles` replaced by ``files`` (kept under the same Subsets)."""
    if isinstance(dataset, Subset):
        return Subset(with_files(dataset.dataset, files), dataset.indices)
    return files


def loader_workers(dataset: Dataset, distributed: bool) -> int:
    """Decoding processes: none for in-memory images; for streamed files the dataset's setting or the cores'."""
    files = streamed(dataset)
    if files is None:
        return 0
    if files.workers is not None:
        return files.workers
    import os

    return default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if distributed else 1)


def make_loader(dataset: Dataset, info: DataInfo, *, batch_size: int, train: bool,
                augment: Augment | None = None, seed: int = 0, distributed: bool = False,
                device: torch.device | None = None) -> DataLoader:
    """A DataLoader yielding normalized (images, labels); shuffled and augmented when ``train``.

    Streamed files are augmented per image (random-resized-crop + flip, :mod:`edgekd.data.transforms`)
    instead of per batch (padded crop + flip), and decoded in worker processes. ``device`` (a GPU):
    in-memory batches come out already there, normalized and augmented on it (training does this;
    scoring loaders stay on the CPU, since ONNX Runtime and calibration read them as NumPy).
    """
    files = streamed(dataset)
    if files is not None and train and augment is not None:
        dataset = with_files(dataset, files.augmented(CropSettings(hflip=augment.hflip), seed=seed))
        augment = None
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=train)
    workers = loader_workers(dataset, distributed)
    on_gpu = device is not None and device.type != "cpu" and workers == 0
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) % batch_size == 1,  # a last batch of one image breaks BatchNorm in training
        collate_fn=BatchTransform(info, augment if train else None, seed=seed, device=device if on_gpu else None),
        generator=torch.Generator().manual_seed(seed) if train and sampler is None else None,
        num_workers=workers,
        pin_memory=workers > 0 and devices.current().type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=worker_init if workers > 0 else None,
    )
