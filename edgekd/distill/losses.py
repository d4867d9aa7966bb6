"""Distillation losses: each one compares what the student and the teacher produced for a batch.

A loss reads logits and/or the features of named layers (``student_layers``/``teacher_layers``),
may own trainable adapters (regressors, built by ``setup`` from real feature shapes), and
returns a scalar. Formulas and papers are in each class's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.distill.regressor import regressor_if_needed


@dataclass
class Outputs:
    """What a model produced for one batch: logits and the features of tapped layers."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class LossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DistillLoss(nn.Module):
    """Base class. ``uses_labels`` losses already include the label cross-entropy."""

    Config: ClassVar[type[LossConfig]] = LossConfig
    uses_labels: ClassVar[bool] = False

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def student_layers(self) -> list[str]:
        return []

    def teacher_layers(self) -> list[str]:
        return []

    def setup(self, student: Outputs, teacher: Outputs) -> None:
        """Build adapters from one batch's real shapes (called once, before the optimizer exists)."""

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) · T², averaged over the batch (Hinton's gradient scaling)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


class KD(DistillLoss):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    L = α · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) · CE(y, softmax(z_s)).
    The T² keeps the soft-target gradients on the same scale as the hard-label ones.
    """

    class Config(LossConfig):
        temperature: float = Field(4.0, gt=0)
        alpha: float = Field(0.9, ge=0, le=1)

    uses_labels = True

    def forward(self, student, teacher, labels):
        c = self.config
        soft = soft_kl(student.logits, teacher.logits, c.temperature)
        return c.alpha * soft + (1 - c.alpha) * F.cross_entropy(student.logits, labels)


class DKD(DistillLoss):
    """Zhao et al. 2022, "Decoupled Knowledge Distillation".

    KD splits into target-class KD (binary KL over [p_target, 1 − p_target]) and non-target KD
    (KL over the non-target classes renormalized); DKD weights them freely:
    L = CE(y, z_s) + α · TCKD · T² + β · NCKD · T²  (paper's CIFAR defaults α=1, β=8, T=4).
    """

    class Config(LossConfig):
        temperature: float = Field(4.0, gt=0)
        alpha: float = Field(1.0, ge=0)
        beta: float = Field(8.0, ge=0)

    uses_labels = True

    def forward(self, student, teacher, labels):
        c = self.config
        t = c.temperature
        gt = F.one_hot(labels, student.logits.shape[1]).bool()
        p_s = F.softmax(student.logits / t, dim=1)
        p_t = F.softmax(teacher.logits / t, dim=1)
        b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], dim=1).clamp_min(1e-8)
        b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], dim=1).clamp_min(1e-8)
        tckd = F.kl_div(b_s.log(), b_t, reduction="batchmean") * t**2
        # Non-target distributions: mask the target logit with a large negative value.
        log_q_s = F.log_softmax(student.logits / t - 1000.0 * gt, dim=1)
        log_q_t = F.log_softmax(teacher.logits / t - 1000.0 * gt, dim=1)
        nckd = F.kl_div(log_q_s, log_q_t, reduction="batchmean", log_target=True) * t**2
        return F.cross_entropy(student.logits, labels) + c.alpha * tckd + c.beta * nckd


class LayerPairs(LossConfig):
    """Student/teacher layers compared pairwise, by module name ([[student, teacher], ...])."""

    pairs: tuple[tuple[str, str], ...] = Field(min_length=1)


class _PairLoss(DistillLoss):
    Config = LayerPairs

    def student_layers(self):
        return [s for s, _ in self.config.pairs]

    def teacher_layers(self):
        return [t for _, t in self.config.pairs]


class FitNets(_PairLoss):
    """Romero et al. 2015, "FitNets: Hints for Thin Deep Nets".

    L = ½ · ‖ u_h(x) − r(v_g(x)) ‖² (mean over elements), where u_h is the teacher's hint layer,
    v_g the student's guided layer and r a learned regressor (1×1 conv, resizing spatially when
    the maps differ). The regressor is dropped after training. ``hint_epochs`` > 0 runs the
    paper's stage 1 first: the hint loss alone, which trains the student up to its guided layer.
    """

    class Config(LayerPairs):
        hint_epochs: int = Field(0, ge=0)

    def setup(self, student, teacher):
        self.regressors = nn.ModuleList(
            regressor_if_needed(student.features[s].shape, teacher.features[t].shape) for s, t in self.config.pairs)

    def forward(self, student, teacher, labels):
        return sum(0.5 * F.mse_loss(reg(student.features[s]), teacher.features[t])
                   for reg, (s, t) in zip(self.regressors, self.config.pairs))


def attention_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    """Q = Σ_c |A_c|^p, flattened and L2-normalized per sample."""
    return F.normalize(feature.abs().pow(p).mean(1).flatten(1), dim=1)


class AT(_PairLoss):
    """Zagoruyko & Komodakis 2017, "Paying More Attention to Attention".

    L = (β/2) · Σ_pairs ‖ Q_s/‖Q_s‖ − Q_t/‖Q_t‖ ‖²  with Q = Σ_c |A_c|^p (p = 2); parameter-free,
    so student and teacher may differ in channels; spatial sizes are matched by interpolation.
    """

    class Config(LayerPairs):
        p: float = Field(2.0, gt=0)
        beta: float = Field(1000.0, ge=0)

    def forward(self, student, teacher, labels):
        total = 0.0
        for s, t in self.config.pairs:
            fs, ft = student.features[s], teacher.features[t]
            if fs.shape[2:] != ft.shape[2:]:
                fs = F.interpolate(fs, size=ft.shape[2:], mode="bilinear", align_corners=False)
            total = total + (attention_map(fs, self.config.p) - attention_map(ft, self.config.p)).pow(2).mean()
        return self.config.beta / 2 * total


def embedding(feature: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(feature, 1).flatten(1) if feature.dim() == 4 else feature.flatten(1)


def pairwise_distance_potential(e: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(e, e)
    mean = d[d > 0].mean().clamp_min(1e-8)
    return d / mean


def angle_potential(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)  # e_ij = (t_i - t_j)/‖t_i - t_j‖
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # cos ∠(t_i, t_j, t_k)


class RKD(DistillLoss):
    """Park et al. 2019, "Relational Knowledge Distillation".

    Transfers relations between samples of a batch, not outputs: distance-wise
    L_D = Σ huber(‖t_i − t_j‖/μ_t, ‖s_i − s_j‖/μ_s) and angle-wise L_A = Σ huber(cos∠t_i t_j t_k,
    cos∠s_i s_j s_k), L = w_d·L_D + w_a·L_A (paper: 25 and 50) on pooled embeddings of a layer
    (default: the logits).
    """

    class Config(LossConfig):
        student_layer: str | None = None
        teacher_layer: str | None = None
        distance_weight: float = Field(25.0, ge=0)
        angle_weight: float = Field(50.0, ge=0)

    def student_layers(self):
        return [self.config.student_layer] if self.config.student_layer else []

    def teacher_layers(self):
        return [self.config.teacher_layer] if self.config.teacher_layer else []

    def forward(self, student, teacher, labels):
        c = self.config
        s = embedding(student.features[c.student_layer]) if c.student_layer else student.logits
        with torch.no_grad():
            t = embedding(teacher.features[c.teacher_layer]) if c.teacher_layer else teacher.logits
            t_dist, t_angle = pairwise_distance_potential(t), angle_potential(t)
        loss_d = F.smooth_l1_loss(pairwise_distance_potential(s), t_dist)
        loss_a = F.smooth_l1_loss(angle_potential(s), t_angle)
        return c.distance_weight * loss_d + c.angle_weight * loss_a
