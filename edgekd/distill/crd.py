"""CRD: contrastive representation distillation against memory banks addressed by sample index.

Tian, Krishnan & Isola 2020 (ICLR), "Contrastive Representation Distillation". The loss keeps one
memory row per training sample for the student's and the teacher's embeddings, so each batch must
carry its samples' dataset indices: :func:`with_indices` wraps the training set to add them as the
batch's third item (in-memory and map-style datasets; the teacher's logits are then not cached,
which CRD's feature taps rule out anyway).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from edgekd.data import DataBundle
from edgekd.distill.losses import DistillLoss, LossConfig, embedding
from edgekd.errors import EdgekdError
from edgekd.models import model_blocks


class WithIndices(Dataset):
    """A training set whose items also carry their index: (image, label, index)."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label, *_ = self.base[index]
        return image, label, torch.tensor(index)

    def __getitems__(self, indices: list[int]):
        if hasattr(self.base, "__getitems__"):
            images, labels, *_ = self.base.__getitems__(indices)
            return images, labels, torch.as_tensor(indices)
        return [self[i] for i in indices]


def with_indices(data: DataBundle) -> DataBundle:
    return dataclasses.replace(data, train=WithIndices(data.train))


def last_block(model: nn.Module, given: str | None, side: str) -> str:
    blocks = model_blocks(model)
    if given is None and not blocks:
        raise EdgekdError(f"crd needs the {side}'s penultimate layer: give `{side}_layer:` "
                          f"({type(model).__name__} declares no blocks)")
    return given or blocks[-1]


class CRD(DistillLoss):
    """Tian, Krishnan & Isola 2020 (ICLR), "Contrastive Representation Distillation".

    Embeddings v_s = ‖W_s·f_s‖-normalized and v_t = ‖W_t·f_t‖-normalized (f: a layer's pooled
    features, by default each model's last block; W: learned linear maps to ``feat_dim``). Memory
    banks M_s, M_t hold one unit row per training sample. For sample i with K negatives j drawn
    uniformly from the N samples, h(v, m) = exp(⟨v, m⟩/τ) / Z (Z = N · mean of the first batch's h,
    then fixed) and the NCE loss with noise P_n = 1/N is
    L_NCE(v, M) = −mean_i [ log h(v_i, M_i) / (h(v_i, M_i) + K/N) + Σ_j log (K/N) / (h(v_i, M_j) + K/N) ],
    L = L_NCE(v_s, M_t) + L_NCE(v_t, M_s); after each step M_i ← normalize(m·M_i + (1 − m)·v_i).
    Defaults as in the authors' RepDistiller: feat_dim 128, K = 16384, τ = 0.07, m = 0.5 (their
    CIFAR runs add it to CE + KD with weight β = 0.8). The label CE is not included. W_s, W_t and
    the banks belong to the loss: never exported.
    """

    class Config(LossConfig):
        student_layer: str | None = None
        teacher_layer: str | None = None
        feat_dim: int = Field(128, ge=1)
        negatives: int = Field(16384, ge=1)
        temperature: float = Field(0.07, gt=0)
        momentum: float = Field(0.5, ge=0, lt=1)

    needs_indices: ClassVar[bool] = True

    def attach(self, student, teacher):
        self.layers = (last_block(student, self.config.student_layer, "student"),
                       last_block(teacher, self.config.teacher_layer, "teacher"))

    def student_layers(self):
        return [getattr(self, "layers", (self.config.student_layer,))[0]]

    def teacher_layers(self):
        return [getattr(self, "layers", (None, self.config.teacher_layer))[1]]

    def setup(self, student, teacher):
        s, t = self.layers
        self.embed_s = nn.Linear(embedding(student.features[s]).shape[1], self.config.feat_dim)
        self.embed_t = nn.Linear(embedding(teacher.features[t]).shape[1], self.config.feat_dim)

    def bind_dataset(self, size: int) -> None:
        """Memory banks for ``size`` training samples (random unit-scale rows, as the authors initialize)."""
        bound = 1.0 / math.sqrt(self.config.feat_dim / 3)
        self.register_buffer("memory_s", torch.rand(size, self.config.feat_dim) * 2 * bound - bound)
        self.register_buffer("memory_t", torch.rand(size, self.config.feat_dim) * 2 * bound - bound)
        self.register_buffer("z", torch.full((2,), -1.0))

    def negatives(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, len(self.memory_s), (len(indices), self.config.negatives), device=indices.device)

    def forward(self, student, teacher, labels):
        if not hasattr(self, "memory_s") or student.indices is None:
            raise EdgekdError("crd needs each sample's index: train it through distill_model (the stage), "
                              "which adds them to the training batches")
        c, idx = self.config, student.indices
        v_s = F.normalize(self.embed_s(embedding(student.features[self.layers[0]])), dim=1)
        v_t = F.normalize(self.embed_t(embedding(teacher.features[self.layers[1]])), dim=1)
        contrast = torch.cat([idx.unsqueeze(1), self.negatives(idx)], dim=1)
        h_s = self.scores(v_s, self.memory_t, contrast, 0)
        h_t = self.scores(v_t, self.memory_s, contrast, 1)
        loss = nce(h_s, len(self.memory_s)) + nce(h_t, len(self.memory_s))
        with torch.no_grad():
            for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                memory[idx] = F.normalize(c.momentum * memory[idx] + (1 - c.momentum) * v.detach(), dim=1)
        return loss

    def scores(self, v: torch.Tensor, memory: torch.Tensor, contrast: torch.Tensor, side: int) -> torch.Tensor:
        """h(v_i, M_j) for j in row i of ``contrast`` (the positive in column 0, then the negatives),
        normalized by Z (set on first use)."""
        h = torch.exp(bank_dots(v, memory.detach(), contrast) / self.config.temperature)
        if self.z[side] < 0:
            self.z[side] = h.mean().detach() * len(self.memory_s)
        return h / float(self.z[side])


def bank_dots(v: torch.Tensor, memory: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """⟨v_i, M_j⟩ for every j in row i of ``contrast`` (B × (1 + K) indices into the N bank rows).

    The same numbers either way: when the bank has no more rows than the batch addresses (N ≤ B·(1 + K),
    e.g. 10,000 samples against 128 × 4,097 draws), one B × N product with the whole bank and a gather of
    its columns; otherwise the addressed rows are gathered (B·(1 + K)·d values) for a batched product.
    """
    if len(memory) <= contrast.numel():  # a copy: the caller updates the bank in place before backward
        return (v @ memory.clone().T).gather(1, contrast)
    return torch.bmm(memory[contrast], v.unsqueeze(2)).squeeze(2)


def nce(h: torch.Tensor, size: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE loss on scores h (B × (1 + K)), positive first, noise P_n = 1/size."""
    noise = (h.shape[1] - 1) / size
    positive = torch.log(h[:, 0] / (h[:, 0] + noise + eps))
    negative = torch.log(noise / (h[:, 1:] + noise + eps)).sum(1)
    return -(positive + negative).mean()
