"""Regressors that map a student feature onto the teacher's shape (FitNets' learned adapter)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Regressor(nn.Module):
    """1×1 conv (or linear for flat features) from student to teacher channels, resizing space if needed.

    Training-only: it belongs to the loss, not the student, so it is never exported.
    """

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size):
        super().__init__()
        self.size = tuple(teacher_shape[2:])
        if len(student_shape) == 4:
            self.proj = nn.Sequential(nn.Conv2d(student_shape[1], teacher_shape[1], 1, bias=False),
                                      nn.BatchNorm2d(teacher_shape[1]))
        else:
            self.proj = nn.Linear(student_shape[1], teacher_shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if x.dim() == 4 and tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x


def regressor_if_needed(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    if tuple(student_shape[1:]) == tuple(teacher_shape[1:]):
        return nn.Identity()
    return Regressor(student_shape, teacher_shape)
