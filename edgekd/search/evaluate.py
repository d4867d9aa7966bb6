"""Score one candidate: build it from its base model, fine-tune briefly, time it on the target.

Accuracy is a proxy: ``proxy_epochs`` of KD from the original on ``proxy_images`` training
images, scored (in ONNX Runtime, int8 where the candidate is int8) on ``score_images`` other
training images; the original is scored on the same images, so the drop compares like with
like. Training images flatter every model a little (the original has seen them): the finalists
are therefore checked again on the selection split (held out of training) after a full recovery.
Nothing here reads the report split: the pick is graded on it only after the search.

Latency is measured side by side with the original (ONNX Runtime, median of 200 runs) where
this machine stands for the target, and estimated from the target profile otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.utils.data import Subset

from edgekd import console
from edgekd.data import DataBundle, make_loader
from edgekd.distill.recovery import RecoveryConfig, recover
from edgekd.errors import EdgekdError
from edgekd.estimate import estimate_latency
from edgekd.factorize.lowrank import factorize_model
from edgekd.measure import count_macs, count_params
from edgekd.onnx_export import export_onnx
from edgekd.prune.goal import Scope, prune_model
from edgekd.judge import judge
from edgekd.metrics import resolve_metric
from edgekd.quantize.int8 import quantize_model
from edgekd.quantize.scheme import Scheme
from edgekd.quantize.speed import slow_int8_layers, without_slow_layers
from edgekd.quantize.ptq import quantize_onnx
from edgekd.runtime.host import can_stand_for
from edgekd.search.space import ORIGINAL, Budget, Candidate
from edgekd.targets import TargetProfile
from edgekd.train import Schedule, TrainConfig


@dataclasses.dataclass
class Scored:
    """A candidate's proxy accuracy, latency on the target, size, and how each was obtained."""

    key: str
    reduction: float
    int8: bool
    accuracy: float  # proxy: held-out training images (finalists: the selection split)
    latency_ms: float | None  # None: not built
    latency_kind: str  # measured | estimated | none
    speedup: float  # over the original, at the budget's batch (measured side by side, or both estimated)
    macs: int
    params: int
    seconds: float
    error: str | None = None  # why the candidate could not be built (e.g. a goal pruning cannot reach)
    base: str = ORIGINAL
    allocation: str = "uniform"
    factorize: float = 0.0

    @classmethod
    def of(cls, candidate: Candidate, **scores) -> Scored:
        return cls(key=candidate.key, reduction=candidate.reduction, int8=candidate.int8, base=candidate.base,
                   allocation=candidate.allocation, factorize=candidate.factorize, **scores)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.base, self.reduction, self.int8, self.allocation, self.factorize)

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


class Evaluator:
    """Builds and scores candidates of one original model (and students distilled from it) for one
    target and budget; ``students`` maps each student's name to the trained student."""

    def __init__(self, original: nn.Module, data: DataBundle, target: TargetProfile, budget: Budget, *,
                 students: dict[str, nn.Module] | None = None, progress: bool = False, metric=None, loss=None):
        self.original, self.data, self.target, self.budget = original.eval(), data, target, budget
        self.metric, self.loss = resolve_metric(metric), loss  # what accuracy means here; the supervised loss
        self.progress = progress
        self.bases = {ORIGINAL: self.original, **{name: m.eval() for name, m in (students or {}).items()}}
        self.teacher = copy.deepcopy(self.original)  # KD freezes its teacher; the original stays as given
        self.last_built: tuple[tuple | None, nn.Module | EdgekdError | None] = (None, None)
        self.shape = (data.info.channels, *data.info.image_size)
        self.here = can_stand_for(target)
        self.scheme = Scheme.for_target(target)
        self.tune, self.scoring = self.split(data, budget)
        self.calibration = make_loader(Subset(data.train, self.tune.indices[:512]), data.info, batch_size=64,
                                       train=False)
        self.folder = tempfile.TemporaryDirectory(prefix="edgekd-search-")
        self.original_onnx = export_onnx(self.original, self.shape)
        self.original_path = self.save(self.original_onnx, "original")
        self.original_accuracy = self.judged(self.original_onnx, self.scoring)

    @staticmethod
    def split(data: DataBundle, budget: Budget) -> tuple[Subset, Subset]:
        """Disjoint, seeded fine-tuning and scoring subsets of the training set."""
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(budget.seed)).tolist()
        scoring = min(budget.score_images, len(order) // 3)
        return Subset(data.train, order[scoring:scoring + budget.proxy_images]), Subset(data.train, order[:scoring])

    def loader(self, dataset):
        return make_loader(dataset, self.data.info, batch_size=256, train=False)

    def judged(self, model, dataset) -> float:
        """The run's metric of ``model`` (PyTorch or ONNX) on ``dataset`` (:func:`edgekd.judge.judge`)."""
        return judge(model, self.loader(dataset), self.metric)

    def save(self, model: onnx.ModelProto, name: str) -> Path:
        path = Path(self.folder.name) / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    def built(self, candidate: Candidate, phase: str) -> nn.Module:
        """:meth:`build` for the ``proxy`` or ``final`` phase, shared by the precisions of one compression
        (they come one after the other): int8 and float of it cost one fine-tune, or one refusal."""
        key = (phase, dataclasses.replace(candidate, int8=False))
        if self.last_built[0] != key:
            proxy = dataclasses.replace(self.data, train=self.tune, selection=self.scoring)
            data, epochs = (proxy, self.budget.proxy_epochs) if phase == "proxy" else \
                (self.data, self.budget.recovery_epochs)
            try:
                self.last_built = (key, self.build(candidate, data, epochs))
            except EdgekdError as error:
                self.last_built = (key, error)
        if isinstance(self.last_built[1], EdgekdError):
            raise self.last_built[1]
        return self.last_built[1]

    def build(self, candidate: Candidate, data: DataBundle, epochs: int) -> nn.Module:
        """The candidate's base pruned or factorized as the candidate says, then KD-recovered from the
        original for ``epochs`` on ``data`` (an uncompressed base is used as it is)."""
        model = copy.deepcopy(self.bases[candidate.base])
        example = torch.zeros(1, *self.shape)
        if candidate.reduction > 0:
            model = prune_model(model, example, reduction=candidate.reduction, scope=Scope(candidate.allocation),
                                round_to=self.target.channel_multiple).model
        if candidate.factorize > 0:
            model = factorize_model(model, example, reduction=candidate.factorize, score=self.rank_scorer(),
                                    round_to=self.target.channel_multiple).model
        if candidate.compressed:
            config = RecoveryConfig(train=TrainConfig(epochs=epochs, lr=0.01, schedule=Schedule.COSINE, augment=None,
                                                      seed=self.budget.seed))
            recover(model.requires_grad_(True), self.teacher, data, config, progress=self.progress,
                    metric=self.metric, loss=self.loss)
        return model.eval()

    def rank_scorer(self):
        """Greedy rank selection's score: the metric on 1,000 fine-tuning images (not the scoring ones)."""
        loader = make_loader(Subset(self.data.train, self.tune.indices[:1000]), self.data.info, batch_size=500,
                             train=False)
        return lambda model: judge(model, loader, self.metric)

    def deployable(self, model: nn.Module, int8: bool) -> onnx.ModelProto:
        """The ONNX model that would ship: float, or int8 in the target's scheme (slow layers float on CPUs)."""
        float_model = export_onnx(model, self.shape)
        if not int8:
            return float_model
        quantized = quantize_model(float_model, self.calibration, scheme=self.scheme).model
        if self.scheme is Scheme.TENSORRT:
            return quantized
        requantize = lambda keep: quantize_onnx(float_model, self.calibration, self.scheme, keep_float=keep).model  # noqa: E731
        return without_slow_layers(quantized, requantize, lambda m: slow_int8_layers(
            float_model, m, self.target, here=self.here, batches=(self.budget.batch,)), keep=[])[0]

    def latency(self, deployable: onnx.ModelProto) -> tuple[float, str, float]:
        """(ms at the budget's batch, measured|estimated, speed-up over the original)."""
        batch = self.budget.batch
        if self.here:
            from edgekd.runtime.onnxruntime import compare_latency

            path = self.save(deployable, "candidate")
            original, candidate = compare_latency([self.original_path, path], self.shape, batch,
                                                  threads=self.target.threads, runs=200)
            return candidate.median_ms, "measured", original.median_ms / candidate.median_ms
        ms = estimate_latency(deployable, self.target, batch).ms
        return ms, "estimated", estimate_latency(self.original_onnx, self.target, batch).ms / ms

    def score(self, candidate: Candidate) -> Scored:
        """Proxy accuracy and target latency of ``candidate``."""
        start = time.perf_counter()
        model = self.built(candidate, "proxy")
        shipped = self.deployable(model, candidate.int8)
        ms, kind, speedup = self.latency(shipped)
        proxy_accuracy = self.judged(shipped, self.scoring)
        scored = Scored.of(candidate, accuracy=proxy_accuracy, latency_ms=ms, latency_kind=kind, speedup=speedup,
                           macs=count_macs(model, self.shape), params=count_params(model),
                           seconds=time.perf_counter() - start)
        console.info(f"search: {candidate.describe()}: proxy accuracy {proxy_accuracy:.4f} "
                     f"(original {self.original_accuracy:.4f}), {ms:.3f} ms {kind} ({speedup:.2f}×)")
        return scored

    def finalize(self, candidate: Candidate) -> Scored:
        """A finalist: full recovery on the training set, accuracy on the selection split."""
        start = time.perf_counter()
        model = self.built(candidate, "final")
        shipped = self.deployable(model, candidate.int8)
        ms, kind, speedup = self.latency(shipped)
        selection = self.judged(shipped, self.data.selection)
        return Scored.of(candidate, accuracy=selection, latency_ms=ms, latency_kind=kind, speedup=speedup,
                         macs=count_macs(model, self.shape), params=count_params(model),
                         seconds=time.perf_counter() - start)

    def original_selection_accuracy(self) -> float:
        return self.judged(self.original_onnx, self.data.selection)

    def close(self) -> None:
        self.folder.cleanup()
