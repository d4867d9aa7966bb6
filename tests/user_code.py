"""Stand-ins for a user's own code, imported by path (``user_code:...``) in tests."""

import torch
from torch import nn
from torch.utils.data import TensorDataset


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(8 * 16, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def tiny_net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return TinyNet(num_classes, in_channels)


def rgb_only_net(num_classes: int = 10) -> nn.Module:
    return TinyNet(num_classes, in_channels=3)


def random_data():
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8, generator=g),
                          torch.randint(0, 4, (64,), generator=g))
    val = TensorDataset(torch.randint(0, 256, (32, 1, 16, 16), dtype=torch.uint8, generator=g),
                        torch.arange(32) % 4)
    return {"train": train, "val": val, "classes": ["a", "b", "c", "d"]}
