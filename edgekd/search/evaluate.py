"""Score one candidate: build its plan of stages on its base, time the result on the target.

A candidate is a plan (:func:`edgekd.search.plans.compression_plan`): the prune / factorize / quantize stage
objects the picked recipe will hold. Scoring builds that plan with :func:`edgekd.plan.build`, the stages' own
work, so the model scored is the model the picked recipe ships.

Accuracy is a proxy: the plan with its recovery shortened to ``proxy_epochs``
(:func:`~edgekd.search.plans.proxy_plan`), trained on ``proxy_images`` training images, its stages' own choices
scored on ``score_images`` other training images, and the result scored there too (in ONNX Runtime, the int8
model where the quantize stage ships one); the original is scored on the same images, so the drop compares like
with like. Training images flatter every model a little (the original has seen them): the finalists are
therefore built again from the exact plan on the whole training set and checked on the selection split (held
out of training). Nothing here reads the report split: the pick is graded on it only after the search.

Latency is measured side by side with the original (ONNX Runtime, median of 200 runs) where
this machine stands for the target, and estimated from the target profile otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import onnx
from torch import nn
from torch.utils.data import Dataset

from edgekd import console
from edgekd.context import RunContext
from edgekd.data import DataBundle, make_loader
from edgekd.data.splits import seeded_parts
from edgekd.errors import EdgekdError
from edgekd.estimate import estimate_latency
from edgekd.judge import judge, judge_pass
from edgekd.measure import count_macs, count_params
from edgekd.metrics import paired_standard_error, resolve_metric
from edgekd.onnx_export import export_onnx
from edgekd.plan import Plan, build
from edgekd.runtime.host import can_stand_for
from edgekd.search.plans import compression_plan, proxy_plan
from edgekd.search.space import ORIGINAL, Budget, Candidate
from edgekd.stages.base import Handoff
from edgekd.supervised import as_supervised
from edgekd.targets import TargetProfile


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
    plan: str = ""  # the settings hash of the candidate's plan (Plan.settings_hash), as the picked recipe holds it
    ships: str = ""  # int8 | float: what its plan ships (an int8 candidate ships float where int8 does not pay)
    drop_se: float | None = None  # finalists: paired standard error of the drop on the selection split (metric units)

    @classmethod
    def of(cls, candidate: Candidate, **scores) -> Scored:
        return cls(key=candidate.key, reduction=candidate.reduction, int8=candidate.int8, base=candidate.base,
                   allocation=candidate.allocation, factorize=candidate.factorize, **scores)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.base, self.reduction, self.int8, self.allocation, self.factorize)

    @property
    def float_twin(self) -> Candidate | None:
        """The float candidate that ships the same model, for an int8 candidate whose quantize stage shipped float."""
        if not (self.int8 and self.ships == "float"):
            return None
        return dataclasses.replace(self.candidate, int8=False)

    def to_dict(self) -> dict:
        """For JSON: timings rounded, the accuracy exact (it decides against an unrounded reference, and a
        finalist read back from disk must fall on the same side of the budget as when it was scored)."""
        return {k: (round(v, 5) if isinstance(v, float) and k not in ("accuracy", "drop_se") else v)
                for k, v in dataclasses.asdict(self).items()}


class Evaluator:
    """Builds and scores candidates of one original model (and students distilled from it) for one
    target and budget; ``students`` maps each student's name to the trained student."""

    def __init__(self, original: nn.Module, data: DataBundle, target: TargetProfile, budget: Budget, *,
                 students: dict[str, nn.Module] | None = None, progress: bool = False, metric=None, loss=None,
                 cache_dir: Path | None = None):
        self.original, self.data, self.target, self.budget = original.eval(), data, target, budget
        self.metric = resolve_metric(metric)  # what accuracy means here
        self.bases = {ORIGINAL: self.original, **{name: m.eval() for name, m in (students or {}).items()}}
        self.last_built: tuple[tuple | None, Handoff | EdgekdError | None] = (None, None)
        self.shape = (data.info.channels, *data.info.image_size)
        self.here = can_stand_for(target)
        self.folder = tempfile.TemporaryDirectory(prefix="edgekd-search-")
        tune, self.scoring = self.split(data, budget)
        proxy = dataclasses.replace(data, train=tune, selection=self.scoring)
        self.contexts = {phase: RunContext(out_dir=Path(self.folder.name) / phase, target=target, data=bundle,
                                           cache_dir=cache_dir, progress=progress, metric=self.metric,
                                           loss=as_supervised(loss), report_timings=False)
                         for phase, bundle in (("proxy", proxy), ("final", data))}
        self.original_onnx = export_onnx(self.original, self.shape)
        self.original_path = self.save(self.original_onnx, "original")
        self.original_accuracy = self.judged(self.original_onnx, self.scoring)
        self.original_selection = None  # the original's pass over the selection split, once asked for

    @staticmethod
    def split(data: DataBundle, budget: Budget) -> tuple[Dataset, Dataset]:
        """Disjoint, seeded fine-tuning and scoring subsets of the training set (the proxy's train and selection)."""
        scoring, tune = seeded_parts(data.train, (min(budget.score_images, len(data.train) // 3), budget.proxy_images),
                                     seed=budget.seed)
        return tune, scoring

    def loader(self, dataset):
        return make_loader(dataset, self.data.info, batch_size=256, train=False)

    def judged(self, model, dataset) -> float:
        """The run's metric of ``model`` (PyTorch or ONNX) on ``dataset`` (:func:`edgekd.judge.judge`)."""
        return judge(model, self.loader(dataset), self.metric)

    def save(self, model: onnx.ModelProto, name: str) -> Path:
        path = Path(self.folder.name) / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    def plan(self, candidate: Candidate, phase: str) -> Plan:
        """What ``phase`` builds of ``candidate``: its exact plan (``final``) or that plan's proxy."""
        plan = compression_plan(candidate, self.budget)
        return plan if phase == "final" else proxy_plan(plan, self.budget.proxy_epochs, self.budget.proxy_images)

    def built(self, candidate: Candidate, phase: str) -> Handoff:
        """``candidate``'s plan built on its base in ``phase``'s context. The stages before quantize are built
        once for the precisions of one compression (they come one after the other): int8 and float of it cost
        one fine-tune, or one refusal."""
        compress, quantize = self.plan(candidate, phase).split_before("quantize")
        key = (phase, candidate.base, compress.settings_hash)
        if self.last_built[0] != key:
            base = Handoff(model=copy.deepcopy(self.bases[candidate.base]).requires_grad_(True),
                           teacher=self.original)  # a base used as a KD teacher elsewhere may be frozen
            try:
                self.last_built = (key, self.build(compress, base, phase, "compress"))
            except EdgekdError as error:
                self.last_built = (key, error)
        if isinstance(self.last_built[1], EdgekdError):
            raise self.last_built[1]
        return self.build(quantize, self.last_built[1], phase, "quantize") if quantize.stages else self.last_built[1]

    def build(self, plan: Plan, given: Handoff, phase: str, part: str) -> Handoff:
        """:func:`edgekd.plan.build` into a fresh scratch folder (no stale training checkpoint is resumed)."""
        root = Path(self.folder.name) / phase / part
        shutil.rmtree(root, ignore_errors=True)
        return build(plan, given, self.contexts[phase], root=root).handoff

    def shipped(self, handoff: Handoff) -> onnx.ModelProto:
        """The ONNX model the plan ships: the quantize stage's int8 file, else the float model exported."""
        return onnx.load(str(handoff.int8.path)) if handoff.int8 is not None else export_onnx(handoff.model, self.shape)

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

    def measured(self, candidate: Candidate, phase: str, dataset):
        """``candidate`` built for ``phase``, what it ships scored on ``dataset`` and timed; that ONNX model;
        and the scoring pass (:func:`edgekd.judge.judge_pass`: each image's score, where the metric has them)."""
        start = time.perf_counter()
        handoff = self.built(candidate, phase)
        shipped = self.shipped(handoff)
        ms, kind, speedup = self.latency(shipped)
        judged = judge_pass(shipped, self.loader(dataset), self.metric)
        scored = Scored.of(candidate, accuracy=judged.value(), latency_ms=ms, latency_kind=kind,
                           speedup=speedup, macs=count_macs(handoff.model, self.shape),
                           params=count_params(handoff.model), seconds=time.perf_counter() - start,
                           plan=compression_plan(candidate, self.budget).settings_hash,
                           ships="int8" if handoff.int8 is not None else "float")
        return scored, shipped, judged

    def score(self, candidate: Candidate) -> Scored:
        """Proxy accuracy and target latency of ``candidate``."""
        scored, _, _ = self.measured(candidate, "proxy", self.scoring)
        ships = " (ships float: the quantize stage found int8 does not pay)" if candidate.int8 and scored.ships == "float" \
            else ""
        console.info(f"search: {candidate.describe()}{ships}: proxy accuracy {scored.accuracy:.4f} "
                     f"(original {self.original_accuracy:.4f}), {scored.latency_ms:.3f} ms {scored.latency_kind} "
                     f"({scored.speedup:.2f}×)")
        return scored

    def finalize(self, candidate: Candidate) -> Scored:
        """A finalist: its exact plan built on the whole training set, accuracy on the selection split, and
        the paired standard error of its drop from the original there (None for a metric with no items)."""
        scored, _, judged = self.measured(candidate, "final", self.data.selection)
        mine, reference = judged.items(), self.original_selection_pass().items()
        if mine is None or reference is None or len(mine) < 2:
            return scored
        return dataclasses.replace(scored, drop_se=paired_standard_error(reference, mine))

    def original_selection_pass(self):
        if self.original_selection is None:
            self.original_selection = judge_pass(self.original_onnx, self.loader(self.data.selection), self.metric)
        return self.original_selection

    def original_selection_accuracy(self) -> float:
        return self.original_selection_pass().value()

    def close(self) -> None:
        self.folder.cleanup()
