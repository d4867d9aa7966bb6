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
from edgekd.supervised import SupervisedLoss


@dataclass
class Outputs:
    """What a model produced for one batch: its outputs (``logits``: a tensor, or a tuple or dict of tensors for
    a model with several heads) and the features of tapped layers."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    images: torch.Tensor | None = None  # the batch itself (the student's side), for losses that run own networks
    indices: torch.Tensor | None = None  # the samples' dataset indices, for losses that ``needs_indices`` (CRD)


class LossConfig(BaseModel):
    """A loss's settings. The class attributes say what the distill stage must arrange for a *phase* (an entry
    registered by its settings alone, run by the training loop itself rather than summed as a term)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    is_phase: ClassVar[bool] = False  # a training phase of its own (LIT's block training, generations)
    needs_teacher: ClassVar[bool] = False  # the phase reads a teacher (LIT) ...
    makes_teachers: ClassVar[bool] = False  # ... or trains its own teachers, so the stage needs none (generations)


class DistillLoss(nn.Module):
    """Base class. ``uses_labels`` losses already include the label cross-entropy; losses that do not
    ``need_teacher`` (self-distillation, online and mutual learning) are given ``teacher=None``."""

    Config: ClassVar[type[LossConfig]] = LossConfig
    uses_labels: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True
    needs_indices: ClassVar[bool] = False  # each batch must carry its samples' dataset indices
    is_phase: ClassVar[bool] = False  # a weighted term of the objective, not a phase of its own (LossConfig)
    makes_teachers: ClassVar[bool] = False
    cross_entropy_only: ClassVar[bool] = False  # its label term is its own cross-entropy: it cannot take a run's loss=
    label_loss: SupervisedLoss = SupervisedLoss()  # the label term of uses_labels losses; the objective sets the run's

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def attach(self, student: nn.Module, teacher: nn.Module | None) -> None:
        """See the models before training (to name the student's blocks, or copy it into peers)."""

    def finish(self, student: nn.Module, score) -> None:
        """After training: ``score(model) -> accuracy``; e.g. mutual learning exports its best peer."""

    def student_layers(self) -> list[str]:
        return []

    def teacher_layers(self) -> list[str]:
        return []

    def setup(self, student: Outputs, teacher: Outputs) -> None:
        """Build adapters from one batch's real shapes (called once, before the optimizer exists)."""

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) · T² over the class axis (axis 1), averaged over the batch (Hinton's
    gradient scaling); for dense scores (N, C, H, W) the KL is taken per pixel and averaged over N·H·W."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    if student_logits.dim() == 2:
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2
    per_pixel = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(1)
    return per_pixel.mean() * temperature**2


class KD(DistillLoss):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    L = α · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) · CE(y, softmax(z_s)).
    The T² keeps the soft-target gradients on the same scale as the hard-label ones. For a segmenter's
    (N, C, H, W) scores the KL is taken per pixel over the class axis and averaged over pixels (as in
    Liu et al. 2019, "Structured Knowledge Distillation for Semantic Segmentation", pixel-wise term), and
    CE is per pixel. With the run's own ``loss``, that loss replaces CE.
    Defaults T = 2, α = 0.9. The common CIFAR setting is T = 4 (mdistiller: CE 0.1, KD 0.9), but Hinton
    et al. found small students distil best at lower temperatures (on MNIST, 2.5–4 for 30 units a
    layer against anything above 8 for 300); on edgekd's Fashion-MNIST benchmark only T = 2 lifts the
    18K-parameter student clear of the seeds' spread, and the 70K one does no worse with it than with
    T = 4 (``benchmarks/results/distill_fashion_mnist.json``, ``kd_sweep``).
    """

    class Config(LossConfig):
        temperature: float = Field(2.0, gt=0)
        alpha: float = Field(0.9, ge=0, le=1)

    uses_labels = True

    def forward(self, student, teacher, labels):
        c = self.config
        soft = soft_kl(student.logits, teacher.logits, c.temperature)
        return c.alpha * soft + (1 - c.alpha) * self.label_loss(student.logits, labels)


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
    cross_entropy_only = True

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
    """Q = mean_c |A_c|^p (∝ Σ_c), flattened and L2-normalized per sample."""
    return F.normalize(feature.abs().pow(p).mean(1).flatten(1), dim=1)


class AT(_PairLoss):
    """Zagoruyko & Komodakis 2017, "Paying More Attention to Attention".

    L = β · Σ_pairs mean_{n,j} (Q_s/‖Q_s‖₂ − Q_t/‖Q_t‖₂)²_{n,j}  with Q = mean_c |A_c|^p (p = 2),
    the mean taken over the batch and the spatial positions j. The paper writes β/2 · ‖·‖ with
    β = 1000; the strength here is the one its experiments ran with, β · mean with β = 1000, as in
    the authors' code (szagoruyko/attention-transfer ``cifar.py``: ``opt.beta * sum(at_losses)``)
    and in mdistiller's reproduction (``AT.LOSS.FEAT_WEIGHT = 1000``). The label CE is not included.
    Parameter-free, so student and teacher may differ in channels; a student map of another
    spatial size is resized to the teacher's by bilinear interpolation.
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
        return self.config.beta * total


def embedding(feature: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(feature, 1).flatten(1) if feature.dim() == 4 else feature.flatten(1)


def pairwise_distance_potential(e: torch.Tensor) -> torch.Tensor:
    """ψ_D(t_i, t_j) = ‖t_i − t_j‖₂ / μ, μ the mean over the pairs i ≠ j at a positive distance.

    Computed from the differences, so the diagonal is exactly zero at any batch size
    (``torch.cdist`` switches to ‖a‖² + ‖b‖² − 2ab above 25 rows, leaving rounding noise there).
    """
    d = (e.unsqueeze(0) - e.unsqueeze(1)).norm(dim=2)
    mean = d[d > 0].mean().clamp_min(1e-8)
    return d / mean


def angle_potential(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)  # e_ij = (t_i - t_j)/‖t_i - t_j‖
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # cos ∠(t_i, t_j, t_k)


class RKD(DistillLoss):
    """Park et al. 2019, "Relational Knowledge Distillation".

    Transfers relations between the samples of a batch, not outputs. With ψ_D the pairwise
    distances divided by their mean over pairs at a positive distance, and ψ_A(i, j, k) =
    cos∠t_i t_j t_k = ⟨e_ji, e_jk⟩ for unit difference vectors e_ji = (t_i − t_j)/‖t_i − t_j‖:
    L = w_d · mean_{i,j} huber(ψ_D^s, ψ_D^t) + w_a · mean_{i,j,k} huber(ψ_A^s, ψ_A^t),
    huber = smooth L1 with δ = 1, the means over all N² pairs and N³ triplets (diagonals included,
    where both sides are 0), as in the authors' ``metric/loss.py``; w_d = 25, w_a = 50 as in their
    classification script. Computed on pooled embeddings of a layer (default: the logits), not
    L2-normalized first (the authors' CIFAR script normalizes them; mdistiller does not).
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


class NKD(DistillLoss):
    """Yang et al. 2023 (ICCV), "From Knowledge Distillation to Self-Knowledge Distillation:
    A Unified Approach with Normalized Loss and Customized Soft Labels" (normalized KD).

    The target class is taught at T = 1 as a teacher-weighted cross-entropy, the non-target classes
    as a distribution of their own, renormalized over the C − 1 non-target classes at temperature T:
    L = −p^T_t · log p^S_t − γ · T² · Σ_{i≠t} q^T_i · log q^S_i,   q_i = softmax_{i≠t}(z_i / T),
    averaged over the batch (the authors' ``NKDLoss``, yzd-v/cls_KD; defaults T = 1, γ = 1.5 as in
    their code and ImageNet ResNet-34→18 config; their CIFAR-100 config uses T = 3, γ = 3.5).
    The non-target term is a cross-entropy: it is the KL(q^T ‖ q^S) plus the teacher's entropy,
    which does not depend on the student, so the gradients are those of the KL. The label CE is
    not included: the paper's total is CE + NKD, which is the distill stage's default (label
    weight 1 when neither kd nor dkd is present).
    """

    class Config(LossConfig):
        temperature: float = Field(1.0, gt=0)
        gamma: float = Field(1.5, ge=0)

    def forward(self, student, teacher, labels):
        c = self.config
        target = labels.unsqueeze(1)
        log_p_s = F.log_softmax(student.logits, dim=1).gather(1, target)
        p_t = F.softmax(teacher.logits, dim=1).gather(1, target)
        target_term = -(p_t * log_p_s).mean()
        # Non-target logits only (the target column removed), so softmax renormalizes over them.
        others = ~F.one_hot(labels, student.logits.shape[1]).bool()
        z_s = student.logits[others].view(len(labels), -1) / c.temperature
        z_t = teacher.logits[others].view(len(labels), -1) / c.temperature
        non_target = -(F.softmax(z_t, dim=1) * F.log_softmax(z_s, dim=1)).sum(1).mean()
        return target_term + c.gamma * c.temperature**2 * non_target
