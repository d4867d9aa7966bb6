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
