"""A small U-Net-style encoder-decoder for semantic segmentation: per-pixel class scores (N, C, H, W).

Ronneberger et al. 2015, "U-Net", cut down to edge size: two stride-2 downsamplings, nearest-neighbour
upsampling, skip connections by concatenation, a 1×1 head. Every op exports to ONNX (opset 17) and runs
in TensorRT and ONNX Runtime; channels can be pruned (torch-pruning follows the concatenations).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.cnn import conv_bn_relu
from edgekd.models.resnet import init_weights


def down(in_channels: int, out_channels: int) -> nn.Sequential:
    """A stride-2 3×3 conv-BN-ReLU, then a 3×3 conv-BN-ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True), *conv_bn_relu(out_channels, out_channels))


class UNet(nn.Module):
    """enc1 (w, full size) → enc2 (2w, /2) → enc3 (4w, /4) → up, concat enc2 → dec2 (2w) → up, concat enc1 →
    dec1 (w) → 1×1 head to ``num_classes`` scores per pixel. Input sides must be multiples of 4."""

    blocks = ("enc1", "enc2", "enc3", "dec2", "dec1")
    task = "segmentation"

    def __init__(self, *, width: int = 16, in_channels: int = 3, num_classes: int = 4,
                 input_size: tuple[int, int] = (32, 32)):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(*conv_bn_relu(in_channels, w), *conv_bn_relu(w, w))
        self.enc2 = down(w, 2 * w)
        self.enc3 = down(2 * w, 4 * w)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = nn.Sequential(*conv_bn_relu(4 * w + 2 * w, 2 * w))
        self.dec1 = nn.Sequential(*conv_bn_relu(2 * w + w, w))
        self.head = nn.Conv2d(w, num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([self.up(e3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], dim=1))
        return self.head(d1)
