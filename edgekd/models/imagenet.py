"""ImageNet-shape models (224 px, ImageNet strides), written here because torchvision is not a dependency.

Layer for layer the torchvision architectures, so their ONNX graphs, MACs and latency are those
of the models published device measurements were taken with (MLPerf's ResNet-50 v1.5, ...):

* ResNet-18/50 (He et al. 2016, table 1); ResNet-50 is v1.5, the stride on the 3×3 conv of the
  bottleneck (torchvision, MLPerf), 4.1 GMACs at 224 px.
* MobileNetV2 (Sandler et al. 2018, table 2) is :class:`edgekd.models.mobilenetv2.MobileNetV2`
  with ``skip=0``: all strides at any input size, 0.3 GMACs at 224 px with width 1.0.

``blocks`` names the stage boundaries, as in every zoo model.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.resnet import BasicBlock, init_weights


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carrying the stride, v1.5) → 1×1 expand ×4, with an identity or projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ImageNetResNet(nn.Module):
    """ResNet with the ImageNet stem (7×7 stride-2 conv, 3×3 max pool) and four stages."""

    blocks = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, *, layers: tuple[int, int, int, int], bottleneck: bool, width: int = 64, in_channels: int = 3,
                 num_classes: int = 1000, input_size: tuple[int, int] = (224, 224)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        channels, stages = width, []
        for i, (count, width) in enumerate(zip(layers, (width, 2 * width, 4 * width, 8 * width))):
            blocks = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                if bottleneck:
                    blocks.append(Bottleneck(channels, width, stride))
                    channels = width * Bottleneck.expansion
                else:
                    blocks.append(BasicBlock(channels, width, stride))
                    channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet_imagenet(*, depth: int, **kwargs) -> ImageNetResNet:
    """ResNet-18/34/50/101 (50 and 101 are v1.5) for ImageNet-shape inputs; ``width`` is the stem's (64)."""
    layers = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False), 50: ((3, 4, 6, 3), True),
              101: ((3, 4, 23, 3), True)}
    if depth not in layers:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(layers)}, got {depth}")
    blocks, bottleneck = layers[depth]
    return ImageNetResNet(layers=blocks, bottleneck=bottleneck, **kwargs)
