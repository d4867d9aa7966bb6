"""Teacher-free distillation: the student teaches itself (or a hand-made distribution does).

For the edge user who has only their small model: label smoothing (the baseline these must
beat), Teacher-free KD's regularization teacher, USKD's customized soft labels, and Be Your Own
Teacher's auxiliary exits. None of them needs a teacher (``needs_teacher = False``); each includes
the label term (``uses_labels``), so the stage adds no second cross-entropy. Trainable parts
(USKD's weak classifier, BYOT's heads) belong to the loss and never reach the exported model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.distill.losses import DistillLoss, LossConfig, embedding
from edgekd.errors import EdgekdError
from edgekd.models import model_blocks


class _SelfLoss(DistillLoss):
    uses_labels = True
    cross_entropy_only = True
    needs_teacher = False


class LabelSmoothing(_SelfLoss):
    """Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision" (§7).

    L = CE(y_ε, softmax(z)) with y_ε = (1 − ε) · onehot(y) + ε / K on every class (K classes),
    averaged over the batch (torch's ``label_smoothing`` convention). Default ε = 0.1.
    """

    class Config(LossConfig):
        epsilon: float = Field(0.1, ge=0, lt=1)

    def forward(self, student, teacher, labels):
        return F.cross_entropy(student.logits, labels, label_smoothing=self.config.epsilon)


def regularization_teacher(labels: torch.Tensor, classes: int, correct: float) -> torch.Tensor:
    """Tf-KD's hand-made teacher: probability ``correct`` on the label, the rest spread evenly."""
    p = torch.full((len(labels), classes), (1 - correct) / (classes - 1), device=labels.device)
    return p.scatter(1, labels.unsqueeze(1), correct)


class TfKDReg(_SelfLoss):
    """Yuan et al. 2020 (CVPR), "Revisiting Knowledge Distillation via Label Smoothing Regularization": Tf-KD_reg.

    A "virtual teacher" p^d puts probability a on the label and (1 − a)/(K − 1) on every other
    class; as in the authors' code (``loss_kd_regularization``) it is softened like logits,
    p^d_τ = softmax(p^d / τ), while the student's distribution stays at T = 1, and the loss is
    L = (1 − α) · CE(y, z) + α · m · (1 / (N·K)) · Σ_n Σ_k p^d_τ,k · log(p^d_τ,k / softmax(z)_k),
    i.e. their ``KLDivLoss()`` (mean over batch and classes) times the multiplier m. Defaults
    a = 0.99, τ = 20, α = 0.95, m = 100 as in the authors' CIFAR-100 setting (K = 100, so m = 100
    is the batch-mean KL; with K classes, m = K gives that strength).
    """

    class Config(LossConfig):
        correct_prob: float = Field(0.99, gt=0, lt=1)
        temperature: float = Field(20.0, gt=0)
        alpha: float = Field(0.95, ge=0, le=1)
        multiplier: float = Field(100.0, ge=0)

    def forward(self, student, teacher, labels):
        c = self.config
        z = student.logits
        virtual = regularization_teacher(labels, z.shape[1], c.correct_prob).to(z)
        log_p_d = F.log_softmax(virtual / c.temperature, dim=1)
        log_p_s = F.log_softmax(z, dim=1)  # at T = 1: only the virtual teacher is softened (authors' code)
        kl = F.kl_div(log_p_s, log_p_d, reduction="batchmean", log_target=True) / z.shape[1]  # mean over N·K
        return (1 - c.alpha) * F.cross_entropy(z, labels) + c.alpha * c.multiplier * kl


def zipf_non_target(weak: torch.Tensor, final: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """USKD's non-target soft labels: Zipf's law 1/rank over the classes ranked by the weak and final
    outputs' normalized probabilities, the label's entry removed and the rest renormalized (N × K−1)."""
    target = labels.unsqueeze(1)
    p_w, p_s = F.softmax(weak, 1), F.softmax(final, 1)
    score = p_w / (1 - p_w.gather(1, target) + 1e-6) + p_s / (1 - p_s.gather(1, target) + 1e-6)
    position = score.argsort(1, descending=True).argsort(1)  # 0 for the highest-scoring class
    zipf = 1.0 / (position + 1).to(final.dtype)
    others = ~F.one_hot(labels, final.shape[1]).bool()
    z = zipf[others].view(len(labels), -1)
    return z / z.sum(1, keepdim=True)


class USKD(_SelfLoss):
    """Yang et al. 2023 (ICCV), "From Knowledge Distillation to Self-Knowledge Distillation: A Unified
    Approach with Normalized Loss and Customized Soft Labels": USKD, the teacher-free half of NKD.

    With s = softmax(z) of the final logits, a weak classifier w = softmax(fc(GAP(F_mid))) on a
    middle layer's features, and the label t:
    L = α · L_target + β · L_non-target + L_weak, where
    L_target = −mean_n p̂_t · log s_t,  p̂_t = s_t² + 1 − mean_batch(s_t²) (no gradient);
    L_non-target = −mean_n Σ_{i≠t} ẑ_i · log softmax_{i≠t}(z)_i, ẑ the Zipf soft labels (1/rank,
    classes ranked by w_i/(1 − w_t) + s_i/(1 − s_t), the label's entry dropped, renormalized);
    L_weak = μ · CE(0.9 · onehot(t) + 0.1/K, w). Defaults α = 1, β = 0.1, μ = 0.005 (the authors'
    ``USKDLoss``, yzd-v/cls_KD). One difference: their code ranks with the final output's
    log-probabilities in the ranking score; this ranks with probabilities for both, as the paper says.
    ``layer`` is the middle layer (default: the student's second-to-last declared block).
    """

    class Config(LossConfig):
        layer: str | None = None
        alpha: float = Field(1.0, ge=0)
        beta: float = Field(0.1, ge=0)
        mu: float = Field(0.005, ge=0)

    def attach(self, student, teacher):
        blocks = model_blocks(student)
        if self.config.layer is None and len(blocks) < 2:
            raise EdgekdError(f"uskd needs a middle layer: give `layer:` ({type(student).__name__} declares "
                              f"{len(blocks)} blocks)")
        self.layer = self.config.layer or blocks[-2]

    def student_layers(self):
        layer = getattr(self, "layer", self.config.layer)
        return [layer] if layer else []

    def setup(self, student, teacher):
        self.weak = nn.Linear(embedding(student.features[self.layer]).shape[1], student.logits.shape[1])

    def forward(self, student, teacher, labels):
        c, z = self.config, student.logits
        target = labels.unsqueeze(1)
        weak = self.weak(embedding(student.features[self.layer]))
        log_s = F.log_softmax(z, 1)
        s_t2 = log_s.gather(1, target).exp().pow(2).detach()
        soft_target = s_t2 + 1 - s_t2.mean()
        loss_target = -(soft_target * log_s.gather(1, target)).mean()
        others = ~F.one_hot(labels, z.shape[1]).bool()
        log_q = F.log_softmax(z[others].view(len(labels), -1), 1)
        zipf = zipf_non_target(weak.detach(), z.detach(), labels)
        loss_non_target = -(zipf * log_q).sum(1).mean()
        smoothed = F.one_hot(labels, z.shape[1]).to(z) * 0.9 + 0.1 / z.shape[1]
        loss_weak = -(smoothed * F.log_softmax(weak, 1)).sum(1).mean()
        return c.alpha * loss_target + c.beta * loss_non_target + c.mu * loss_weak


class _Exit(nn.Module):
    """A BYOT auxiliary exit: bottleneck to the deepest block's width, global pooling, classifier."""

    def __init__(self, in_shape: torch.Size, width: int, classes: int):
        super().__init__()
        if len(in_shape) == 4:
            self.bottleneck = nn.Sequential(nn.Conv2d(in_shape[1], width, 1, bias=False), nn.BatchNorm2d(width),
                                            nn.ReLU())
        else:
            self.bottleneck = nn.Sequential(nn.Linear(in_shape[1], width), nn.ReLU())
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = embedding(self.bottleneck(x))
        return self.fc(feature), feature


class BYOT(_SelfLoss):
    """Zhang et al. 2019 (ICCV), "Be Your Own Teacher: Improve the Performance of Convolutional Neural
    Networks via Self Distillation".

    Auxiliary exits after each of the student's blocks but the last (bottleneck → pooling → FC) are
    taught by the deepest exit, the student's own output z_C with pooled last-block features F_C:
    L = CE(y, z_C) + Σ_{i<C} [(1 − α) · CE(y, z_i) + α · KL(softmax(z_C/T) ‖ softmax(z_i/T))
                              + λ · mean_n ‖F_i − F_C‖²₂],
    the deepest exit's outputs and features taken without gradient (the teacher side), KL summed over
    classes and averaged over the batch, without T² (as in the paper's formula). Defaults α = 0.3,
    T = 3, λ = 0.03 (as in the public reimplementation of the authors' CIFAR runs). ``blocks``
    default to the student's declared blocks. The exits belong to this loss: never exported.
    """

    class Config(LossConfig):
        blocks: tuple[str, ...] | None = None
        alpha: float = Field(0.3, ge=0, le=1)
        temperature: float = Field(3.0, gt=0)
        feature_weight: float = Field(0.03, ge=0)

    def attach(self, student, teacher):
        self.blocks = list(self.config.blocks or model_blocks(student))
        if len(self.blocks) < 2:
            raise EdgekdError(f"byot needs at least two blocks for its exits: give `blocks: [...]` "
                              f"({type(student).__name__} declares {len(self.blocks)})")

    def student_layers(self):
        return list(getattr(self, "blocks", self.config.blocks or ()))

    def setup(self, student, teacher):
        width = embedding(student.features[self.blocks[-1]]).shape[1]
        classes = student.logits.shape[1]
        self.exits = nn.ModuleList(_Exit(student.features[b].shape, width, classes) for b in self.blocks[:-1])

    def forward(self, student, teacher, labels):
        c = self.config
        deep_p = F.softmax(student.logits.detach() / c.temperature, 1)
        deep_f = embedding(student.features[self.blocks[-1]]).detach()
        total = F.cross_entropy(student.logits, labels)
        for block, head in zip(self.blocks, self.exits):
            logits, feature = head(student.features[block])
            kl = F.kl_div(F.log_softmax(logits / c.temperature, 1), deep_p, reduction="batchmean")
            hint = (feature - deep_f).pow(2).sum(1).mean()
            total = total + (1 - c.alpha) * F.cross_entropy(logits, labels) + c.alpha * kl + c.feature_weight * hint
        return total
