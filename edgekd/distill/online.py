"""Online distillation: networks that learn together from scratch and teach each other as they go.

Deep Mutual Learning trains the student with peers of its own architecture; BD-KD trains it with
an online teacher. The peers and the online teacher are trainable parts of the loss (optimized
with the student, saved in its training checkpoints), never part of the exported student; only
the student (or, for DML, the best peer, copied into it) leaves the stage.
"""

from __future__ import annotations

import copy
import enum

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd import console
from edgekd.distill.losses import DistillLoss, LossConfig
from edgekd.distill.peers import fresh_copy
from edgekd.errors import EdgekdError


def peer_seed() -> int:
    """A seed for a re-initialized peer, drawn from the run's random state: peers follow the training seed
    (another seed, other peers) and differ from the student's initialization."""
    return int(torch.randint(2**31 - 1, ()))


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per sample, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


class PeerChoice(str, enum.Enum):
    STUDENT = "student"  # the student itself (peer 0)
    BEST = "best"  # the network with the best accuracy on the validation split (the student included)


class DML(DistillLoss):
    """Zhang, Xiang, Hospedales & Lu 2018 (CVPR), "Deep Mutual Learning".

    The student and K − 1 peers of its architecture (re-initialized copies) train together; each
    network k minimizes
    L_k = CE(y, z_k) + 1/(K − 1) · Σ_{j≠k} T² · KL(softmax(z_j/T) ‖ softmax(z_k/T)),
    the other networks' predictions taken as fixed targets (no gradient), KL summed over classes and
    averaged over the batch; the loss returned is Σ_k L_k (the networks share no parameters, so each
    gets exactly its own gradient: the simultaneous form of the paper's alternating updates).
    Default T = 1 (the paper's). The student is exported (``export: student``); ``export: best``
    copies in the network with the best accuracy on the validation split instead (the paper reports
    each peer; any one can be deployed) — when that split is also the test set, as with edgekd's
    Fashion-MNIST, the accuracy then reported is picked on it, so optimistic.
    """

    class Config(LossConfig):
        peers: int = Field(1, ge=1, description="networks besides the student (K − 1)")
        temperature: float = Field(1.0, gt=0)
        export: PeerChoice = PeerChoice.STUDENT

    uses_labels = True
    cross_entropy_only = True
    needs_teacher = False

    def attach(self, student, teacher):
        self.peers = nn.ModuleList(fresh_copy(student, peer_seed()) for _ in range(self.config.peers))

    def forward(self, student, teacher, labels):
        t = self.config.temperature
        logits = [student.logits] + [peer(student.images) for peer in self.peers]
        log_p = [F.log_softmax(z / t, 1) for z in logits]
        total = 0.0
        for k, z in enumerate(logits):
            mimicry = sum(kl_rows(log_p[j].detach(), log_p[k]).mean() for j in range(len(logits)) if j != k)
            total = total + F.cross_entropy(z, labels) + t**2 * mimicry / (len(logits) - 1)
        return total

    def finish(self, student, score):
        if self.config.export is PeerChoice.STUDENT:
            return
        scores = [score(student)] + [score(peer) for peer in self.peers]
        best = max(range(len(scores)), key=scores.__getitem__)
        console.info(f"dml: validation accuracy of the student and its peers {[round(s, 4) for s in scores]}; "
                     f"exporting {'the student' if best == 0 else f'peer {best}'}")
        if best:
            student.load_state_dict(self.peers[best - 1].state_dict())


class OnlineTeacher(str, enum.Enum):
    FRESH = "fresh"  # the teacher's architecture (the student's when there is none), trained from scratch
    PRETRAINED = "pretrained"  # a trainable copy of the stage's teacher, weights kept


def entropy(log_p: torch.Tensor) -> torch.Tensor:
    return -(log_p.exp() * log_p).sum(1)


class BDKD(DistillLoss):
    """Amara, Sepahvand, Meyer, Gross & Clark 2022, "BD-KD: Balancing the Divergences for Online
    Knowledge Distillation".

    An online teacher t trains with the student s. Per sample n, with entropies H at T = 1 and
    softened distributions p = softmax(z/T):
    L_s = CE(y, z_s) + T² · mean_n [w_f,n · KL(p_t ‖ p_s) + w_r,n · KL(p_s ‖ p_t)],
    (w_f, w_r) = (1, μ) when H(s_n) > H(t_n) (an under-confident student: the mode-seeking reverse
    KL is weighted up) and (λ, 1) otherwise (an over-confident one: the mass-covering forward KL is);
    L_t = CE(y, z_t) + T² · mean_n KL(p_t ‖ p_s), the reverse KL from the teacher's side as its
    regularizer; each side's target is taken without gradient; the loss returned is L_s + L_t.
    The authors' code is not public; this follows the paper's description, with edgekd's defaults
    λ = μ = 2, T = 4. The online teacher is the stage teacher's architecture re-initialized
    (``fresh``, the paper's setting) or its trained copy (``pretrained``); with no teacher, the
    student's architecture. It is trained, never exported.
    """

    class Config(LossConfig):
        temperature: float = Field(4.0, gt=0)
        forward_weight: float = Field(2.0, ge=0, description="λ")
        reverse_weight: float = Field(2.0, ge=0, description="μ")
        online_teacher: OnlineTeacher = OnlineTeacher.FRESH

    uses_labels = True
    cross_entropy_only = True
    needs_teacher = False

    def attach(self, student, teacher):
        if self.config.online_teacher is OnlineTeacher.PRETRAINED:
            if teacher is None:
                raise EdgekdError("bdkd's online_teacher: pretrained needs a teacher entering the stage; use fresh")
            online = copy.deepcopy(teacher)
        else:
            online = fresh_copy(teacher if teacher is not None else student, peer_seed())
        for p in online.parameters():
            p.requires_grad_(True)
        self.online = online.train()

    def forward(self, student, teacher, labels):
        c, t = self.config, self.config.temperature
        z_t = self.online(student.images)
        z_s = student.logits
        log_s, log_t = F.log_softmax(z_s / t, 1), F.log_softmax(z_t / t, 1)
        with torch.no_grad():
            less_sure = entropy(F.log_softmax(z_s, 1)) > entropy(F.log_softmax(z_t, 1))
            w_f = torch.where(less_sure, 1.0, c.forward_weight)
            w_r = torch.where(less_sure, c.reverse_weight, 1.0)
        target_t = log_t.detach()
        student_term = (w_f * kl_rows(target_t, log_s) + w_r * kl_rows(log_s, target_t)).mean()
        teacher_term = kl_rows(log_t, log_s.detach()).mean()
        return (F.cross_entropy(z_s, labels) + t**2 * student_term
                + F.cross_entropy(z_t, labels) + t**2 * teacher_term)
