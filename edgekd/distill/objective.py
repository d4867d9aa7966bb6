"""What the training loop minimizes when distilling: labels plus weighted teacher-student losses.

The teacher is held outside the module tree (so its weights are neither optimized nor saved
with the objective), runs in eval mode without gradients, and its logits may come precomputed
with the batch (see :mod:`edgekd.distill.cache`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.losses import DistillLoss, Outputs
from edgekd.distill.taps import FeatureTaps


class Ensemble(nn.Module):
    """Several teachers as one (Hinton et al. 2015): their temperature-softened outputs averaged.

    Returns T · log(mean_i softmax(z_i / T)), so softmax(output / T) is exactly the averaged
    soft distribution that KD at temperature T distils from.
    """

    def __init__(self, teachers: list[nn.Module], temperature: float = 4.0):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        probs = torch.stack([F.softmax(m(x) / t, dim=1) for m in self.teachers]).mean(0)
        return t * probs.clamp_min(1e-12).log()


class DistillObjective(nn.Module):
    """L = label_weight · CE(y, z_s) + Σ_i weight_i · L_i(student, teacher)."""

    def __init__(self, teacher: nn.Module, losses: list[tuple[float, DistillLoss]], *, label_weight: float):
        super().__init__()
        object.__setattr__(self, "teacher", teacher.eval())  # not a submodule: never optimized or saved
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.losses = nn.ModuleList(loss for _, loss in losses)
        self.weights = [w for w, _ in losses]
        self.label_weight = label_weight
        self.student_layers = sorted({n for loss in self.losses for n in loss.student_layers()})
        self.teacher_layers = sorted({n for loss in self.losses for n in loss.teacher_layers()})

    @torch.no_grad()
    def teacher_outputs(self, images: torch.Tensor, cached_logits: torch.Tensor | None) -> Outputs:
        if cached_logits is not None and not self.teacher_layers:
            return Outputs(cached_logits)
        self.teacher.eval()
        with FeatureTaps(self.teacher, self.teacher_layers) as taps:
            logits = self.teacher(images)
        return Outputs(logits, taps.outputs)

    def student_outputs(self, model: nn.Module, images: torch.Tensor) -> Outputs:
        with FeatureTaps(model, self.student_layers) as taps:
            logits = model(images)
        return Outputs(logits, taps.outputs)

    def setup(self, model: nn.Module, images: torch.Tensor) -> None:
        """Let losses build their regressors from one real batch (before the optimizer is made)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            student = self.student_outputs(model, images)
        teacher = self.teacher_outputs(images, None)
        for loss in self.losses:
            loss.setup(student, teacher)
        model.train(was_training)

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                cached_logits: torch.Tensor | None = None):
        teacher = self.teacher_outputs(images, cached_logits)
        student = self.student_outputs(model, images)
        total = self.label_weight * F.cross_entropy(student.logits, labels) if self.label_weight else 0.0
        for weight, loss in zip(self.weights, self.losses):
            total = total + weight * loss(student, teacher, labels)
        return total, student.logits
