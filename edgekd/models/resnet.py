"""CIFAR-style ResNets (He et al. 2016, section 4.2): depth 6n+2, three stages of basic blocks.

The wide ``x4`` variants follow the CRD benchmark (Tian et al. 2020): a 32-channel stem and
stages of 64/128/256 channels.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; ``blocks`` names the three stages (for feature distillation)."""

    blocks = ("layer1", "layer2", "layer3")

    def __init__(self, depth: int, *, widths: tuple[int, int, int] = (16, 32, 64), stem: int = 16,
                 in_channels: int = 3, num_classes: int = 10, input_size: tuple[int, int] = (32, 32)):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        last_stride = 2 if min(input_size) >= 16 else 1
        self.layer1 = self._stage(stem, widths[0], n, stride=1)
        self.layer2 = self._stage(widths[0], widths[1], n, stride=2)
        self.layer3 = self._stage(widths[1], widths[2], n, stride=last_stride)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        init_weights(self)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, n: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels, 1) for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs, unit BN, small linear init: the usual ResNet initialization."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def resnet(*, depth: int, width: int = 16, stem: int = 16, **kwargs) -> CifarResNet:
    """ResNet-``depth`` with stages of ``width``, 2·``width``, 4·``width`` channels."""
    return CifarResNet(depth, widths=(width, 2 * width, 4 * width), stem=stem, **kwargs)
