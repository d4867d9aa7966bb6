"""MobileNetV3-Small and -Large (Howard et al. 2019, "Searching for MobileNetV3", tables 1 and 2).

Layer for layer torchvision's ``mobilenet_v3_small`` / ``mobilenet_v3_large`` (2.54M / 5.48M
parameters, 0.06 / 0.22 GMACs at 224 px), ImageNet strides at every input size: inverted
residuals with 3×3 or 5×5 depthwise convs, squeeze-and-excitation (hard-sigmoid gate) in some
blocks, hard-swish in the later ones. ``width`` scales every channel count (rounded to 8).
``blocks`` names the last block of every resolution and the head, for feature distillation.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.mobilenetv2 import make_divisible
from edgekd.models.resnet import init_weights

# kernel, expanded channels, output channels, squeeze-excite, hard-swish, stride (the paper's tables)
LARGE = ((3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
         (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
         (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
         (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
         (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1))
SMALL = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
         (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
         (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
         (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1))
VARIANTS = {"large": (LARGE, 1280), "small": (SMALL, 1024)}  # blocks, classifier hidden width


def conv_bn_act(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                activation: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.01)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global pool → 1×1 conv (÷4) → ReLU → 1×1 conv → hard-sigmoid, times the input."""

    def __init__(self, channels: int):
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class Bneck(nn.Module):
    """1×1 expand → k×k depthwise → (squeeze-excite) → 1×1 linear projection, residual when shapes allow."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, se: bool, hswish: bool,
                 stride: int):
        super().__init__()
        activation = nn.Hardswish if hswish else nn.ReLU
        layers = [conv_bn_act(in_channels, expanded, 1, activation=activation)] if expanded != in_channels else []
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, activation=activation))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(conv_bn_act(expanded, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV3(nn.Module):
    """MobileNetV3 ``variant`` (small | large) with a width multiplier."""

    def __init__(self, *, variant: str = "large", width: float = 1.0, in_channels: int = 3, num_classes: int = 10,
                 input_size: tuple[int, int] = (224, 224), dropout: float = 0.2):
        super().__init__()
        settings, hidden = VARIANTS[variant]
        channels = make_divisible(16 * width)
        self.stem = conv_bn_act(in_channels, channels, 3, 2, activation=nn.Hardswish)
        blocks = []
        for kernel, expanded, out, se, hswish, stride in settings:
            out, expanded = make_divisible(out * width), make_divisible(expanded * width)
            blocks.append(Bneck(channels, kernel, expanded, out, se, hswish, stride))
            channels = out
        self.features = nn.Sequential(*blocks)
        last = 6 * channels
        self.head = conv_bn_act(channels, last, 1, activation=nn.Hardswish)
        self.pool = nn.AdaptiveAvgPool2d(1)
        hidden = make_divisible(hidden * width)
        self.classifier = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(hidden, num_classes))
        strides = [s for *_, s in settings[1:]] + [2]  # a block ends a resolution when the next one strides
        self.blocks = tuple(f"features.{i}" for i, s in enumerate(strides) if s == 2) + ("head",)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
