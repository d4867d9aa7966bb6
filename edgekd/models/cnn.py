"""A plain VGG-style CNN: three blocks of 3×3 conv-BN-ReLU, pooling between them.

Cheap on a CPU and strong on small images; edgekd's default teacher and student family.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.resnet import init_weights


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class PlainCNN(nn.Module):
    """block1 (``stem_depth`` convs, w) → pool → block2 (2 convs, 2w) → pool → block3 (``depth`` convs, 4w) → GAP → FC."""

    blocks = ("block1", "block2", "block3")

    def __init__(self, *, width: int = 32, depth: int = 1, stem_depth: int = 2, in_channels: int = 3, num_classes: int = 10,
                 input_size: tuple[int, int] = (32, 32), dropout: float = 0.0):
        super().__init__()
        w = width
        layers = conv_bn_relu(in_channels, w)
        for _ in range(stem_depth - 1):
            layers += conv_bn_relu(w, w)
        self.block1 = nn.Sequential(*layers)
        self.pool1 = nn.MaxPool2d(2)
        self.block2 = nn.Sequential(*conv_bn_relu(w, 2 * w), *conv_bn_relu(2 * w, 2 * w))
        self.pool2 = nn.MaxPool2d(2) if min(input_size) >= 8 else nn.Identity()
        layers = conv_bn_relu(2 * w, 4 * w)
        for _ in range(depth - 1):
            layers += conv_bn_relu(4 * w, 4 * w)
        self.block3 = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return self.classifier(torch.flatten(self.pool(x), 1))
