"""LIT block-wise training (Koratana et al. 2019, "LIT: Learned Intermediate Representation Training").

LIT compresses by depth: the student has the teacher's width and stages but fewer blocks in each.
Its first phase trains every student stage i to reproduce teacher stage i's output *from the
teacher's own input to that stage*, while the whole student also learns the teacher's outputs:

    L = β · KD(S(x), T(x)) + (1 − β) · Σ_i ‖ r_i(S_i(a_i(X_i^T))) − T_i(X_i^T) ‖²  (mean squared error)

where X_i^T is the teacher's input to stage i and a_i, r_i are 1×1 adapters used only when channel
counts differ. As in the authors' code (stanford-futuredata/lit-code, cifar10/main.py: β = 0.75),
the student starts from the teacher's layers outside the stages (stem, classifier) wherever names
and shapes match, and those stay frozen in this phase; the whole student is then fine-tuned end
to end with KD. β = 0 is block training alone (each stage learns independently).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.losses import DistillLoss, Outputs
from edgekd.distill.objective import RunsATeacher
from edgekd.distill.regressor import regressor_if_needed
from edgekd.distill.taps import FeatureTaps, find_module
from edgekd.errors import EdgekdError
from edgekd.models import model_blocks


def pair_blocks(student: nn.Module, teacher: nn.Module,
                pairs: tuple[tuple[str, str], ...] | None) -> list[tuple[str, str]]:
    """Blocks paired by name: given pairs, or the two models' declared blocks in order."""
    if pairs:
        for s, t in pairs:
            find_module(student, s)
            find_module(teacher, t)
        return list(pairs)
    s_blocks, t_blocks = model_blocks(student), model_blocks(teacher)
    if not s_blocks or not t_blocks:
        raise EdgekdError("LIT needs block pairs: give `pairs: [[student_block, teacher_block], ...]` "
                          f"(student blocks: {s_blocks or 'none declared'}; teacher blocks: {t_blocks or 'none declared'})")
    if len(s_blocks) != len(t_blocks):
        raise EdgekdError(f"LIT cannot pair {len(s_blocks)} student blocks ({', '.join(s_blocks)}) with "
                          f"{len(t_blocks)} teacher blocks ({', '.join(t_blocks)}); give `pairs` explicitly")
    return list(zip(s_blocks, t_blocks))


def inherit_outside_blocks(student: nn.Module, teacher: nn.Module, pairs: list[tuple[str, str]]) -> list[str]:
    """Copy the teacher's weights into the student's modules outside the paired blocks whose name, type and
    tensor shapes match the teacher's (a depth-reduced student's stem and classifier); returns their names."""
    inside = tuple(f"{s}." for s, _ in pairs) + tuple(f"{t}." for _, t in pairs)
    teacher_modules = dict(teacher.named_modules())
    inherited = []
    for name, module in student.named_modules():
        own = module.state_dict(keep_vars=True) if not list(module.children()) else {}
        source = teacher_modules.get(name)
        if not own or f"{name}.".startswith(inside) or type(source) is not type(module):
            continue
        theirs = source.state_dict()
        if theirs.keys() == own.keys() and all(theirs[k].shape == own[k].shape for k in own):
            module.load_state_dict(theirs)
            inherited.append(name)
    return inherited


class LITObjective(RunsATeacher):
    """LIT's first phase; returns (loss, student logits), or (loss, None) with β = 0 (no full forward).

    ``kd`` scores the whole student against the teacher (weight ``kd_weight`` = β); with ``inherit`` the
    student first takes the teacher's matching layers outside the blocks, frozen until :meth:`finish`.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, pairs: list[tuple[str, str]], images: torch.Tensor,
                 *, kd: DistillLoss | None = None, kd_weight: float = 0.0, inherit: bool = False):
        super().__init__()
        object.__setattr__(self, "teacher", teacher.eval())
        object.__setattr__(self, "student_blocks", {s: find_module(student, s) for s, _ in pairs})
        self.pairs = pairs
        self.kd = kd
        self.kd_weight = kd_weight if kd is not None else 0.0
        self.inherited = inherit_outside_blocks(student, teacher, pairs) if inherit else []
        self.frozen = [p for name in self.inherited for p in find_module(student, name).parameters()]
        for p in self.frozen:
            p.requires_grad_(False)
        t_in, t_out, _ = self.teacher_io(images)
        s_in, s_out = self.student_io(student, images)
        self.in_adapters = nn.ModuleList()
        self.out_adapters = nn.ModuleList()
        for s, t in pairs:
            if t_in[t].dim() != s_in[s].dim() or (t_in[t].dim() == 4 and t_in[t].shape[2:] != s_in[s].shape[2:]):
                raise EdgekdError(f"LIT cannot feed teacher block '{t}' input {tuple(t_in[t].shape[1:])} to student "
                                  f"block '{s}' (expects {tuple(s_in[s].shape[1:])}): spatial sizes differ")
            self.in_adapters.append(regressor_if_needed(t_in[t].shape, s_in[s].shape))
            self.out_adapters.append(regressor_if_needed(s_out[s].shape, t_out[t].shape))

    @torch.no_grad()
    def teacher_io(self, images):
        self.teacher.eval()
        with FeatureTaps(self.teacher, [t for _, t in self.pairs], inputs=True) as taps:
            logits = self.teacher(images)
        return taps.inputs, taps.outputs, logits

    @torch.no_grad()
    def student_io(self, student, images):
        was_training = student.training
        student.eval()
        with FeatureTaps(student, [s for s, _ in self.pairs], inputs=True) as taps:
            student(images)
        student.train(was_training)
        return taps.inputs, taps.outputs

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cached_logits=None):
        t_in, t_out, t_logits = self.teacher_io(images)
        blocks = 0.0
        for (s, t), a_in, a_out in zip(self.pairs, self.in_adapters, self.out_adapters):
            prediction = a_out(self.student_blocks[s](a_in(t_in[t])))
            blocks = blocks + F.mse_loss(prediction, t_out[t])
        if not self.kd_weight:
            return blocks, None
        logits = model(images)
        whole = self.kd(Outputs(logits), Outputs(t_logits), labels)
        return self.kd_weight * whole + (1 - self.kd_weight) * blocks, logits

    def finish(self, student: nn.Module, score) -> None:
        """After the phase: the inherited layers train again in the end-to-end phase."""
        for p in self.frozen:
            p.requires_grad_(True)
