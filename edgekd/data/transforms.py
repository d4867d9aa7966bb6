"""Per-image transforms at the model's input size, written with PIL (torchvision is not a dependency).

* training: random-resized-crop (Szegedy et al. 2015, as torchvision's ``RandomResizedCrop``:
  area 8–100% of the image, aspect ratio 3/4–4/3) + horizontal flip;
* evaluation: resize the shorter side to ``size / 0.875`` (256 for 224) + center crop.

Crop and resize are one ``Image.resize(box=...)`` call, and JPEGs are decoded at the smallest
DCT scale (``Image.draft``) that still covers the crop at the output size, so a large photo costs
a fraction of a full decode. Randomness comes from a ``numpy`` generator the caller seeds per
item, so an augmented epoch is the same whatever the number of worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

EVAL_CROP_FRACTION = 0.875  # 224 of 256: the standard ImageNet evaluation resize


@dataclass(frozen=True)
class CropSettings:
    """Random-resized-crop ranges (fractions of the image's area, width/height ratios)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True


Box = tuple[float, float, float, float]  # left, top, right, bottom in source pixels


def random_resized_box(width: int, height: int, rng: np.random.Generator, settings: CropSettings) -> Box:
    """A random crop box as torchvision samples it (10 tries, then the central crop of allowed ratio)."""
    area = width * height
    log_ratio = (math.log(settings.ratio[0]), math.log(settings.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*settings.scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < settings.ratio[0]:
        w, h = width, round(width / settings.ratio[0])
    elif aspect > settings.ratio[1]:
        w, h = round(height * settings.ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_box(width: int, height: int, size: tuple[int, int]) -> Box:
    """The box that "resize shorter side to size/0.875, then center-crop size" reads from the source."""
    out_h, out_w = size
    resized_short = max(out_h, out_w) / EVAL_CROP_FRACTION
    factor = min(width, height) / resized_short  # source pixels per resized pixel
    w, h = min(width, out_w * factor), min(height, out_h * factor)
    left, top = (width - w) / 2, (height - h) / 2
    return left, top, left + w, top + h


def read_image(path: Path, mode: str, size: tuple[int, int], *, rng: np.random.Generator | None,
               settings: CropSettings) -> torch.Tensor:
    """Decode ``path`` into a uint8 C×H×W tensor of ``size``: augmented when ``rng`` is given, else centered."""
    from PIL import Image

    out_h, out_w = size
    with Image.open(path) as img:
        width, height = img.size
        box = (random_resized_box(width, height, rng, settings) if rng is not None
               else center_box(width, height, size))
        img, box = draft(img, mode, box, size)
        pixels = img.convert(mode).resize((out_w, out_h), Image.BILINEAR, box=box)
    array = np.asarray(pixels, dtype=np.uint8).reshape(out_h, out_w, -1)
    if rng is not None and settings.hflip and rng.random() < 0.5:
        array = array[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def draft(img, mode: str, box: Box, size: tuple[int, int]):
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when the crop still has at least ``size`` pixels then."""
    if img.format != "JPEG":
        return img, box
    shrink = min((box[2] - box[0]) / size[1], (box[3] - box[1]) / size[0])
    if shrink < 2:
        return img, box
    width, height = img.size
    img.draft(mode, (math.ceil(width / shrink), math.ceil(height / shrink)))
    fx, fy = img.size[0] / width, img.size[1] / height
    return img, (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
