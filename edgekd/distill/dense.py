"""Output distillation for models with several outputs or dense ones: one term per output tensor.

A segmenter's class scores are distilled per pixel (Hinton's KD over the class axis), a regression
head (boxes, depth, keypoints) by its distance to the teacher's. ``kd`` on a model that returns a tuple
or a dict becomes this loss (:func:`edgekd.distill.recovery.for_outputs`).
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.distill.losses import DistillLoss, LossConfig, soft_kl
from edgekd.errors import UserFunctionError
from edgekd.judge import flatten_outputs


class OutputKind(str, enum.Enum):
    """How one output tensor is compared with the teacher's."""

    KL = "kl"  # class scores on axis 1: Hinton KD, per pixel for dense maps
    MSE = "mse"  # regression: mean squared difference
    L1 = "l1"  # regression: mean absolute difference


def distance(kind: OutputKind, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    if kind is OutputKind.KL:
        return soft_kl(student, teacher, temperature)
    if kind is OutputKind.MSE:
        return F.mse_loss(student, teacher)
    return F.l1_loss(student, teacher)


class OutputKD(DistillLoss):
    """Output distillation per output tensor (Hinton, Vinyals & Dean 2015, applied to each head).

    L = α · Σ_k D_k(s_k, t_k) + (1 − α) · L_sup(outputs, y), over the model's output tensors k, where
    D_k is, by the output's kind:

    * ``kl``: T² · KL(softmax(t_k/T) ‖ softmax(s_k/T)) over axis 1, per pixel for (N, C, H, W) maps and
      averaged over N·H·W (Hinton et al. 2015; pixel-wise distillation, Liu et al. 2019, "Structured
      Knowledge Distillation for Semantic Segmentation");
    * ``mse``: mean (s_k − t_k)² (logit/feature regression, Ba & Caruana 2014, "Do Deep Nets Really Need
      to be Deep?"; the regression-head term of Chen et al. 2017, "Learning Efficient Object Detection
      Models with Knowledge Distillation");
    * ``l1``: mean |s_k − t_k|.

    ``kinds`` names an output's kind by its name (``logits``, ``output_0``, ``output_1``, ... or a dict's key);
    unnamed outputs: the first is ``kl`` (class scores come first), the others ``mse``. L_sup is the run's
    loss (cross-entropy by default). Defaults T = 2, α = 0.9, as for KD.
    """

    class Config(LossConfig):
        temperature: float = Field(2.0, gt=0)
        alpha: float = Field(0.9, ge=0, le=1)
        kinds: dict[str, OutputKind] = Field(default_factory=dict)

    uses_labels = True

    def kind_of(self, name: str, position: int) -> OutputKind:
        return self.config.kinds.get(name, OutputKind.KL if position == 0 else OutputKind.MSE)

    def forward(self, student, teacher, labels):
        c = self.config
        names, ours = flatten_outputs(student.logits)
        their_names, theirs = flatten_outputs(teacher.logits)
        if names != their_names:
            raise UserFunctionError(f"output distillation compares outputs by name, but the student returns "
                                    f"{list(names)} and the teacher {list(their_names)}")
        total = sum(distance(self.kind_of(name, k), s, t.detach(), c.temperature)
                    for k, (name, s, t) in enumerate(zip(names, ours, theirs)))
        if c.alpha == 1:
            return total
        return c.alpha * total + (1 - c.alpha) * self.label_loss(student.logits, labels)
