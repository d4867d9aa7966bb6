"""One small model per topology that structured pruning must keep consistent.

Each takes 1×16×16 images and returns 10 logits; `user_code`-style factories so the CLI can
load them by path too (``topologies:residual``).
"""

import torch
from torch import nn


def cbr(cin: int, cout: int, *, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class Residual(nn.Module):
    """Two adds onto one trunk: the trunk's channels are one coupled group."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b, self.head = cbr(1, 32), cbr(32, 32), cbr(32, 32), Head(32)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.a(x)
        return self.head(x + self.b(x))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.left, self.right, self.fuse, self.head = cbr(1, 16), cbr(16, 32), cbr(16, 32), cbr(64, 32), Head(32)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.fuse(torch.cat([self.left(x), self.right(x)], dim=1)))


class Split(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.left, self.right, self.head = cbr(1, 32), cbr(16, 32), cbr(16, 32), Head(64)

    def forward(self, x):
        a, b = torch.chunk(self.stem(x), 2, dim=1)
        return self.head(torch.cat([self.left(a), self.right(b)], dim=1))


class Depthwise(nn.Module):
    """MobileNet-style: expand 1×1, depthwise 3×3, project 1×1."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(1, 16)
        self.expand = nn.Sequential(nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.dw = cbr(64, 64, groups=64)
        self.project = nn.Sequential(nn.Conv2d(64, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.head = Head(32)

    def forward(self, x):
        return self.head(self.project(self.dw(self.expand(self.stem(x)))))


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.grouped, self.head = cbr(1, 64), cbr(64, 128, groups=4), Head(128)

    def forward(self, x):
        return self.head(self.grouped(self.stem(x)))


class Reused(nn.Module):
    """One conv applied twice: its input and output channels are the same group."""

    def __init__(self):
        super().__init__()
        self.stem, self.shared, self.head = cbr(1, 32), cbr(32, 32), Head(32)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.shared(self.shared(x)))


class FixedView(nn.Module):
    """Reshapes with a channel count written into the code: pruning its channels cannot work."""

    def __init__(self):
        super().__init__()
        self.features = cbr(1, 32)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).view(-1, 128))


TOPOLOGIES = {"residual": Residual, "concat": Concat, "split": Split, "depthwise": Depthwise,
              "grouped": Grouped, "reused": Reused}


def residual(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return Residual()


def fixed_view(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return FixedView()


class UnequalSplit(nn.Module):
    """Splits 8 + 24 channels by sizes written into the code."""

    def __init__(self):
        super().__init__()
        self.stem, self.left, self.right, self.head = cbr(1, 32), cbr(8, 16), cbr(24, 16), Head(32)

    def forward(self, x):
        a, b = torch.split(self.stem(x), [8, 24], dim=1)
        return self.head(torch.cat([self.left(a), self.right(b)], dim=1))


# --- the corpus: realistic widths, so the targets' channel multiples (8-32) leave sizes to choose from ---


class ConcatUnequal(nn.Module):
    """Two branches of 32 and 96 channels concatenated: the consumer's inputs come from two groups."""

    def __init__(self):
        super().__init__()
        self.stem, self.narrow, self.wide = cbr(1, 64), cbr(64, 32), cbr(64, 96)
        self.fuse, self.head = cbr(128, 128), Head(128)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.fuse(torch.cat([self.narrow(x), self.wide(x)], dim=1)))


class SqueezeExcite(nn.Module):
    """Hu et al. 2018: channel weights from a pooled, squeezed and re-expanded copy multiply the features."""

    def __init__(self, channels: int, squeeze: int, gate: type[nn.Module] = nn.Sigmoid):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.expand = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = nn.ReLU(), gate()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.body = cbr(1, 64), cbr(64, 128)
        self.se, self.out, self.head = SqueezeExcite(128, 32), cbr(128, 128), Head(128)

    def forward(self, x):
        return self.head(self.out(self.se(self.body(self.stem(x)))))


class MobileNetV3Block(nn.Module):
    """Howard et al. 2019: expand 1×1, depthwise 3×3 with hardswish, SE with hardsigmoid, project, residual."""

    def __init__(self, channels: int = 64, expanded: int = 192):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(expanded, expanded, 3, padding=1, groups=expanded, bias=False),
                                nn.BatchNorm2d(expanded), nn.Hardswish())
        self.se = SqueezeExcite(expanded, 48, nn.Hardsigmoid)
        self.project = nn.Sequential(nn.Conv2d(expanded, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.se(self.dw(self.expand(x))))


class MobileNetV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.Hardswish())
        self.block1, self.block2, self.head = MobileNetV3Block(), MobileNetV3Block(), Head(64)

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))))


class Bottleneck(nn.Module):
    """He et al. 2016 (ResNet-50): 1×1 reduce, 3×3 (stride 2), 1×1 expand ×4, projection shortcut."""

    def __init__(self, cin: int = 64, width: int = 64, stride: int = 2):
        super().__init__()
        cout = width * 4
        self.reduce = nn.Sequential(nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))


class ResNetBottleneck(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.layer1, self.layer2, self.head = cbr(1, 64), Bottleneck(64, 64, 1), Bottleneck(256, 64), Head(256)

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))))


class UserCNN(nn.Module):
    """The issue's model: a two-branch concat, a grouped conv, a depthwise conv and one conv applied twice."""

    def __init__(self):
        super().__init__()
        self.stem, self.left, self.right = cbr(1, 64), cbr(64, 64), cbr(64, 96)
        self.merge = cbr(160, 128, groups=4)
        self.dw, self.shared, self.head = cbr(128, 128, groups=128), cbr(128, 128), Head(128)

    def forward(self, x):
        x = self.stem(x)
        x = self.merge(torch.cat([self.left(x), self.right(x)], dim=1))
        return self.head(self.shared(self.shared(self.dw(x))))


CORPUS = {"concat-unequal": ConcatUnequal, "squeeze-excite": SENet, "mobilenetv3-block": MobileNetV3,
          "resnet50-bottleneck": ResNetBottleneck, "user-cnn": UserCNN}


def user_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return UserCNN()
