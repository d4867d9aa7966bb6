"""LIT block-wise training (Koratana et al. 2019, "LIT: Learned Intermediate Representation Training").

Each student block i learns to reproduce teacher block i's output *from the teacher's own input
to that block*: L = Σ_i ‖ r_i(S_i(a_i(X_i^T))) − T_i(X_i^T) ‖² (mean), where X_i^T is the
teacher's input to block i and a_i, r_i are 1×1 adapters used only when channel counts differ.
Blocks therefore learn independently (they could train in parallel); the whole student is then
fine-tuned end to end with KD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


class LITObjective(nn.Module):
    """The block-wise phase of LIT; returns (loss, None): there are no student logits to score."""

    def __init__(self, teacher: nn.Module, student: nn.Module, pairs: list[tuple[str, str]], images: torch.Tensor):
        super().__init__()
        object.__setattr__(self, "teacher", teacher.eval())
        object.__setattr__(self, "student_blocks", {s: find_module(student, s) for s, _ in pairs})
        self.pairs = pairs
        t_in, t_out = self.teacher_io(images)
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
            self.teacher(images)
        return taps.inputs, taps.outputs

    @torch.no_grad()
    def student_io(self, student, images):
        was_training = student.training
        student.eval()
        with FeatureTaps(student, [s for s, _ in self.pairs], inputs=True) as taps:
            student(images)
        student.train(was_training)
        return taps.inputs, taps.outputs

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cached_logits=None):
        t_in, t_out = self.teacher_io(images)
        total = 0.0
        for (s, t), a_in, a_out in zip(self.pairs, self.in_adapters, self.out_adapters):
            prediction = a_out(self.student_blocks[s](a_in(t_in[t])))
            total = total + F.mse_loss(prediction, t_out[t])
        return total, None

