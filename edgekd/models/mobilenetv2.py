"""MobileNetV2 (Sandler et al. 2018) with a width multiplier, strides adapted to small inputs."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.resnet import init_weights

# expansion t, channels c, repeats n, stride s (ImageNet strides; small inputs drop the early ones)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90% of ``value`` (as the paper's code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise → 1×1 linear projection, residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers = [conv_bn_relu(in_channels, hidden, 1, 1)] if expansion != 1 else []
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2; ``blocks`` names the stages whose resolution differs (for feature distillation)."""

    def __init__(self, *, width: float = 1.0, in_channels: int = 3, num_classes: int = 10,
                 input_size: tuple[int, int] = (32, 32), dropout: float = 0.2, skip: int | None = None):
        super().__init__()
        # Small images keep resolution early: skip the stem stride and the first stage strides
        # until about 32 / 8 = 4 pixels remain at the end; ``skip=0`` keeps every stride (ImageNet).
        if skip is None:
            skip = 0 if min(input_size) >= 128 else (2 if min(input_size) >= 24 else 3)
        channels = make_divisible(32 * width)
        self.stem = conv_bn_relu(in_channels, channels, 3, 2 if skip == 0 else 1)
        stages, strided = [], 0
        for t, c, n, s in SETTINGS:
            out = make_divisible(c * width)
            if s == 2:
                strided += 1
                s = 1 if strided <= skip - 1 else 2
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        last = make_divisible(1280 * max(1.0, width))
        self.head = conv_bn_relu(channels, last, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        self.blocks = ("stages.1", "stages.2", "stages.3", "stages.5", "head")
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
