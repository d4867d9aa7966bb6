"""What the training loop minimizes when distilling: labels plus weighted teacher-student losses.

The teacher is held outside the module tree (so its weights are neither optimized nor saved
with the objective), runs in eval mode without gradients, and its logits may come precomputed
with the batch (see :mod:`edgekd.distill.cache`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.losses import DistillLoss, Outputs
from edgekd.distill.taps import FeatureTaps
from edgekd.errors import ConfigError, EdgekdError
from edgekd.supervised import SupervisedLoss, as_supervised


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


class RunsATeacher(nn.Module):
    """An objective that runs ``self.teacher``, held outside the module tree (neither optimized nor saved):
    ``to(device)`` and friends move the teacher with it."""

    teacher: nn.Module | None

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher._apply(fn, recurse)
        return self


class DistillObjective(RunsATeacher):
    """L = label_weight · CE(y, z_s) + Σ_i weight_i · L_i(student, teacher).

    ``teacher`` may be None when no loss needs one (self-distillation, online and mutual learning);
    the teacher then does not run even when given (an online loss trains its own copy of it).
    ``supervised``: the run's ``loss(outputs, targets)``, which replaces CE here and inside the losses
    that include it (kd, outputs); default cross-entropy.
    """

    def __init__(self, teacher: nn.Module | None, losses: list[tuple[float, DistillLoss]], *, label_weight: float,
                 supervised: SupervisedLoss | Callable | None = None):
        super().__init__()
        self.losses = nn.ModuleList(loss for _, loss in losses)
        self.weights = [w for w, _ in losses]
        self.label_weight = label_weight
        self.supervised = as_supervised(supervised)
        fixed = [type(loss).__name__ for loss in self.losses if loss.cross_entropy_only]
        if fixed and not self.supervised.is_default:
            raise ConfigError(f"{', '.join(fixed)} train with their own cross-entropy on class scores, so they cannot "
                              f"use your loss ({self.supervised.name}): distil with kd, outputs, fitnets, at or rkd")
        for loss in self.losses:
            loss.label_loss = self.supervised
        needing = [type(loss).__name__ for loss in self.losses if loss.needs_teacher]
        if teacher is None and needing:
            raise EdgekdError(f"{', '.join(needing)} need a teacher: put a teacher stage (or a model) before the "
                              "distill stage, or use a teacher-free loss (byot, uskd, tfkd-reg, dml, bdkd, ...)")
        object.__setattr__(self, "teacher", teacher.eval() if teacher is not None else None)  # never a submodule
        for p in teacher.parameters() if teacher is not None else ():
            p.requires_grad_(False)
        self.uses_teacher = bool(needing)

    @property
    def student_layers(self) -> list[str]:
        return sorted({n for loss in self.losses for n in loss.student_layers()})

    @property
    def teacher_layers(self) -> list[str]:
        return sorted({n for loss in self.losses for n in loss.teacher_layers()}) if self.uses_teacher else []

    @torch.no_grad()
    def teacher_outputs(self, images: torch.Tensor, cached_logits: torch.Tensor | None) -> Outputs | None:
        if not self.uses_teacher:
            return None
        if cached_logits is not None and not self.teacher_layers:
            return Outputs(cached_logits)
        self.teacher.eval()
        with FeatureTaps(self.teacher, self.teacher_layers) as taps:
            logits = self.teacher(images)
        return Outputs(logits, taps.outputs)

    def student_outputs(self, model: nn.Module, images: torch.Tensor) -> Outputs:
        with FeatureTaps(model, self.student_layers) as taps:
            logits = model(images)
        return Outputs(logits, taps.outputs, images)

    def setup(self, model: nn.Module, images: torch.Tensor) -> None:
        """Let losses see the models and build their trainable parts from one real batch (before the optimizer)."""
        for loss in self.losses:
            loss.attach(model, self.teacher)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            student = self.student_outputs(model, images)
        teacher = self.teacher_outputs(images, None)
        for loss in self.losses:
            loss.setup(student, teacher)
        model.train(was_training)

    def finish(self, model: nn.Module, score) -> None:
        """After training; ``score(model)`` is its validation accuracy (mutual learning picks its best peer)."""
        for loss in self.losses:
            loss.finish(model, score)

    @property
    def wants_indices(self) -> bool:
        return any(loss.needs_indices for loss in self.losses)

    def bind_dataset(self, size: int) -> None:
        """Tell losses that keep per-sample state (CRD's memory banks) how many training samples there are."""
        for loss in self.losses:
            if loss.needs_indices:
                loss.bind_dataset(size)

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                extra: torch.Tensor | None = None):
        """``extra``, the batch's third item: the sample indices when ``wants_indices``, else cached teacher logits."""
        indices, cached_logits = (extra, None) if self.wants_indices else (None, extra)
        teacher = self.teacher_outputs(images, cached_logits)
        student = self.student_outputs(model, images)
        student.indices = indices
        total = self.label_weight * self.supervised(student.logits, labels) if self.label_weight else 0.0
        for weight, loss in zip(self.weights, self.losses):
            total = total + weight * loss(student, teacher, labels)
        return total, student.logits
