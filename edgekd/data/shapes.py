"""A generated segmentation dataset: coloured shapes on textured backgrounds, with a class per pixel.

Each image is ``size`` × ``size`` RGB (uint8) on a background of random stripes (orientation,
frequency, phase and colours drawn per image) plus noise, with up to three shapes (square, circle,
triangle) of random colour, size and place painted over it in turn; its mask (int64, ``size`` ×
``size``) holds 0 for background and 1-3 for the shape class on top at that pixel. Everything is
drawn from one seeded generator, so the same seed gives the same images; 2,500 images of 32 px take
well under a second. ``DataSpec(source="shapes")`` loads it (train 2,000 / val 500 unless subset).
"""

from __future__ import annotations

import math

import torch

from edgekd.data.datasets import DataInfo, TensorImages
from edgekd.data.splits import Sources

CLASSES = ("background", "square", "circle", "triangle")
SHAPES_PER_IMAGE = 3


def stripes(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Float (count, 3, size, size) backgrounds in 0-1: two colours blended by a sinusoid, plus noise."""
    grid = torch.arange(size, dtype=torch.float32)
    y, x = grid.view(1, size, 1), grid.view(1, 1, size)
    angle = torch.rand(count, 1, 1, generator=generator) * math.pi
    frequency = 0.3 + torch.rand(count, 1, 1, generator=generator) * 0.9
    phase = torch.rand(count, 1, 1, generator=generator) * 2 * math.pi
    wave = 0.5 + 0.5 * torch.sin(frequency * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    low, high = (torch.rand(count, 3, 1, 1, generator=generator) * 0.6 for _ in range(2))
    noise = torch.rand(count, 3, size, size, generator=generator) * 0.15
    return low + (high - low) * wave.unsqueeze(1) + noise


def shape_masks(kind: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, r: torch.Tensor, size: int) -> torch.Tensor:
    """Bool (count, size, size): a square, circle or triangle (kind 1, 2, 3) of half-size ``r`` at (cy, cx)."""
    grid = torch.arange(size, dtype=torch.float32)
    dy = grid.view(1, size, 1) - cy.view(-1, 1, 1)
    dx = grid.view(1, 1, size) - cx.view(-1, 1, 1)
    r = r.view(-1, 1, 1)
    square = (dy.abs() <= r) & (dx.abs() <= r)
    circle = dy.pow(2) + dx.pow(2) <= r.pow(2)
    triangle = (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) * 0.6)  # apex up
    kind = kind.view(-1, 1, 1)
    return torch.where(kind == 1, square, torch.where(kind == 2, circle, triangle))


def make_shapes(count: int, *, size: int = 32, seed: int = 0, shapes: int = SHAPES_PER_IMAGE) -> TensorImages:
    """``count`` images (uint8, 3 × size × size) and their masks (int64, size × size), seeded; ``shapes``: at most
    this many per image (``1``: exactly one, for single-object tasks)."""
    generator = torch.Generator().manual_seed(seed)
    images = stripes(count, size, generator)
    masks = torch.zeros(count, size, size, dtype=torch.int64)
    for slot in range(shapes):
        chance = 1.0 if shapes == 1 else 0.9 if slot == 0 else 0.6
        present = (torch.rand(count, generator=generator) < chance).view(-1, 1, 1)
        kind = torch.randint(1, len(CLASSES), (count,), generator=generator)
        r = size * (0.1 + torch.rand(count, generator=generator) * 0.12)
        cy, cx = (r + torch.rand(count, generator=generator) * (size - 2 * r) for _ in range(2))
        colour = 0.35 + torch.rand(count, 3, 1, 1, generator=generator) * 0.65
        inside = shape_masks(kind, cy, cx, r, size) & present
        images = torch.where(inside.unsqueeze(1), colour.expand(-1, -1, size, size), images)
        masks = torch.where(inside, kind.view(-1, 1, 1), masks)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return TensorImages(pixels, masks)


def load_shapes(*, train: int = 2000, val: int = 500, size: int = 32, seed: int = 0) -> Sources:
    """The shapes dataset as a data source: ``train`` and ``val`` images from disjoint seeds."""
    info = DataInfo(name="shapes", num_classes=len(CLASSES), channels=3, image_size=(size, size),
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), classes=CLASSES)
    return Sources(train=make_shapes(train, size=size, seed=seed), val=make_shapes(val, size=size, seed=seed + 1),
                   info=info, val_name="val (generated, seed +1)")
