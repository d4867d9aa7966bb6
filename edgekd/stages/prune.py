"""The ``prune`` stage: remove channels until a MAC, parameter or latency goal is met, recover
with KD from the unpruned model, and optionally make the result 2:4 sparse for TensorRT.

Order of work, each step a report row:

1. ``steps`` rounds of channel pruning (torch-pruning; see :mod:`edgekd.prune.structured`),
   each reaching its share of the goal and followed by KD recovery from the unpruned model.
   Channel counts are rounded to the target's ``channel_multiple``.
2. Before the last recovery, the pruned and unpruned models are timed side by side on this
   machine: a pruned model that is slower (odd channel counts off the fast kernels) stops the
   stage, when this machine can stand for the target.
3. For targets whose runtime uses 2:4 sparsity (``sparsity_2_4`` in the profile), magnitude
   2:4 masks, fixed, then another KD recovery. The export stage verifies the weights.

Everything needed to rebuild the result (layer sizes and weights) is saved, so a resumed run
restores it without pruning again; a run killed mid-recovery resumes from its last epoch.
"""

from __future__ import annotations

import copy
import enum
import json
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file
from torch import nn

from edgekd import console, measure
from edgekd.atomic import write_json
from edgekd.bench import check_can_stand_for
from edgekd.context import RunContext
from edgekd.data import make_loader
from edgekd.distill.recovery import RecoveryConfig, recover
from edgekd.errors import EdgekdError, PruneError
from edgekd.models.loading import save_weights
from edgekd.prune import semistructured
from edgekd.prune.architecture import layer_sizes, resize_like
from edgekd.prune.importance import Importance, accumulate_gradients
from edgekd.prune.structured import (
    ChannelPruning,
    SearchResult,
    check_forward,
    copy_with_gradients,
    protected_layers,
    prune_channels,
    search_ratio,
)
from edgekd.runtime.compare import HostComparer
from edgekd.stages.base import Stage
from edgekd.train import accuracy

SLOWER_TOLERANCE = 1.05  # pruned/unpruned latency above this is "slower", beyond timing noise


class Metric(str, enum.Enum):
    MACS = "macs"
    PARAMS = "params"
    LATENCY = "latency"  # host ONNX Runtime latency at latency_batch, measured side by side
    CHANNELS = "channels"  # the channel ratio itself, no search


class PruneStage(Stage):
    """Structured channel pruning to a goal, KD recovery, and 2:4 sparsity where the target uses it."""

    stage: Literal["prune"] = "prune"
    metric: Metric = Metric.MACS
    reduction: float = Field(0.5, gt=0, lt=1, description="fraction of the metric to remove")
    importance: Importance = Importance.L2
    scope: Literal["uniform", "global"] = "uniform"
    steps: int = Field(1, ge=1, description="prune in this many steps, recovering after each")
    protect: tuple[str, ...] = Field((), description="layers whose outputs keep all channels: first, last, patterns")
    round_to: int | None = Field(None, ge=1, description="channel multiple; default: the target's channel_multiple")
    tolerance: float = Field(0.05, gt=0, lt=1, description="allowed relative miss of the reduction")
    latency_batch: int = Field(64, ge=1, description="batch for the latency metric and the slower-than-dense check")
    latency_check: bool = True
    report_batches: tuple[int, ...] = (1, 64)
    taylor_batches: int = Field(8, ge=1)
    sparsity_2_4: bool | Literal["auto"] = "auto"
    recovery: RecoveryConfig = RecoveryConfig()
    sparse_recovery_epochs: int | None = Field(None, ge=0, description="default: the recovery's epochs")

    def apply(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        if model is None:
            raise EdgekdError("the prune stage needs a model: put a teacher or distill stage before it")
        if self.metric is Metric.LATENCY:
            try:
                check_can_stand_for(ctx.target)
            except EdgekdError as exc:
                raise PruneError(f"metric: latency times the model here, but {exc}; use metric: macs") from None
        dense = copy.deepcopy(model).eval()
        example = torch.zeros(1, *ctx.input_shape)
        how = self.channel_pruning(ctx, model, example)
        before = {"macs": measure.count_macs(dense, ctx.input_shape), "params": measure.count_params(dense)}
        rows = []
        with HostComparer(dense, ctx.input_shape, threads=ctx.host_threads) as timer:
            for step in range(1, self.steps + 1):
                model, row = self.prune_step(model, step, dense, before, example, how, timer, ctx)
                rows.append(row)
            if self.wants_2_4(ctx):
                model, row = self.sparsify_step(model, dense, how, ctx)
                rows.append(row)
        ctx.details.update(metric=self.metric.value, reduction=self.reduction, importance=self.importance.value,
                           scope=self.scope, round_to=how.round_to, protected=list(how.protect), steps=rows,
                           macs_before=before["macs"], params_before=before["params"])
        ctx.model_spec = None  # no longer a zoo architecture
        self.save(model, ctx)
        return model

    def restore(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        record = json.loads((ctx.stage_dir / "pruned.json").read_text())
        pruned = resize_like(copy.deepcopy(model), record["sizes"], load_file(ctx.stage_dir / "model.safetensors"))
        ctx.sparse_layers = tuple(record["sparse_layers"])
        ctx.model_spec = None
        return pruned

    # --- the steps ---------------------------------------------------------------------------

    def prune_step(self, model, step, dense, before, example, how, timer, ctx) -> tuple[nn.Module, dict]:
        """One round: reach this step's share of the goal, check speed (last round), recover."""
        saved = ctx.stage_dir / f"train-step{step}-pruned.json"
        if saved.exists():  # an interrupted run: rebuild this step's pruned model, then resume recovery
            row = json.loads(saved.read_text())
            model = resize_like(copy.deepcopy(model), row.pop("sizes"),
                                load_file(ctx.stage_dir / f"train-step{step}-pruned.safetensors"))
        else:
            model, row = self.prune_to_goal(model, step, dense, before, example, how, timer, ctx)
            save_weights(model, ctx.stage_dir / f"train-step{step}-pruned.safetensors")
            write_json(saved, {**row, "sizes": layer_sizes(model)})
        result = recover(model, dense, ctx, self.recovery, checkpoint=ctx.stage_dir / f"train-step{step}.pt")
        row["accuracy_recovered"] = result.accuracy if result else row["accuracy_pruned"]
        row["host_latency"] = [c.to_dict() for c in timer.compare(model, self.report_batches)]
        console.info(f"prune: step {step}/{self.steps}: MACs {row['macs']:,} ({row['macs'] / before['macs']:.1%}), "
                     f"accuracy {row['accuracy_pruned']:.4f} → {row['accuracy_recovered']:.4f} after recovery")
        ctx.accuracy, ctx.accuracy_source = row["accuracy_recovered"], "pytorch"
        return model, row

    def prune_to_goal(self, model, step, dense, before, example, how, timer, ctx) -> tuple[nn.Module, dict]:
        share = self.reduction * step / self.steps
        if self.importance.needs_gradients:
            loader = make_loader(ctx.data.train, ctx.data.info, batch_size=64, train=False)
            accumulate_gradients(model, loader, self.taylor_batches)
        if self.metric is Metric.CHANNELS:
            pruned = prune_channels(copy_with_gradients(model), example, share, how)
            check_forward(pruned, example, model(example).shape)
            result = SearchResult(pruned, share, 1 - share)
        else:
            result = search_ratio(model, example, 1 - share, self.measure_fn(before, timer, ctx), how,
                                  iterations=8 if self.metric is Metric.LATENCY else 14)
        model.zero_grad(set_to_none=True)
        pruned = result.model
        achieved = 1 - result.remaining
        if step == self.steps:
            self.check_reached(achieved, how)
            if self.latency_check:
                self.check_not_slower(pruned, timer, ctx)
        row = {"step": step, "kind": "channels", "channel_ratio": round(result.channel_ratio, 4),
               f"{self.metric.value}_reduction": round(achieved, 4),
               "macs": measure.count_macs(pruned, ctx.input_shape), "params": measure.count_params(pruned),
               "size_bytes": measure.state_dict_bytes(pruned), "accuracy_pruned": accuracy(pruned, ctx.val_loader)}
        return pruned, row

    def measure_fn(self, before: dict, timer: HostComparer, ctx: RunContext):
        """The fraction of the metric a pruned candidate keeps."""
        if self.metric is Metric.MACS:
            return lambda m: measure.count_macs(m, ctx.input_shape) / before["macs"]
        if self.metric is Metric.PARAMS:
            return lambda m: measure.count_params(m) / before["params"]
        return lambda m: 1 / timer.compare(m, (self.latency_batch,))[0].speedup

    def check_reached(self, achieved: float, how: ChannelPruning) -> None:
        if abs(achieved - self.reduction) > self.tolerance * self.reduction:
            raise PruneError(
                f"pruning reached a {self.metric.value} reduction of {achieved:.1%}, not the {self.reduction:.0%} "
                f"asked for (±{self.tolerance:.0%}): with channels rounded to multiples of {how.round_to} the model "
                "has too few sizes to choose from; use scope: global, a smaller round_to, or another reduction")

    def check_not_slower(self, pruned: nn.Module, timer: HostComparer, ctx: RunContext) -> None:
        """Refuse a pruned model that runs slower than the unpruned one on the target's runtime here."""
        try:
            check_can_stand_for(ctx.target)
        except EdgekdError:
            ctx.note("prune", f"this machine cannot stand for {ctx.target.name}, so the slower-than-dense check was "
                              "not made; measure on the device with `edgekd bench`")
            return
        comparison = timer.compare(pruned, (self.latency_batch,))[0]
        if comparison.speedup < 1 / SLOWER_TOLERANCE:
            raise PruneError(
                f"the pruned model is slower than the unpruned one on this machine ({comparison.candidate.median_ms:.3f} "
                f"vs {comparison.baseline.median_ms:.3f} ms at batch {self.latency_batch}): odd channel counts miss "
                "the fast kernels; raise round_to (e.g. 16), prune more, or set latency_check: false")

    def sparsify_step(self, model, dense, how, ctx) -> tuple[nn.Module, dict]:
        """2:4 masks on every eligible layer, fine-tuned with the masks fixed, then baked in."""
        names = semistructured.sparsify(model)
        if not names:
            raise PruneError("no layer can take 2:4 sparsity (it needs dense convs or linears with a multiple of 4 "
                             "input channels); set sparsity_2_4: false")
        masked = accuracy(model, ctx.val_loader)
        epochs = self.recovery.train.epochs if self.sparse_recovery_epochs is None else self.sparse_recovery_epochs
        result = recover(model, dense, ctx, self.recovery, checkpoint=ctx.stage_dir / "train-sparse.pt", epochs=epochs)
        semistructured.bake(model)
        narrow = semistructured.narrow_layers(model, names)
        notes = [f"2:4 sparsity on {len(names)} layers: TensorRT runs them with sparse Tensor Core kernels on "
                 f"{ctx.target.name}; a CPU runtime runs them dense, so host latency cannot show the speed-up"]
        if narrow:
            notes.append(f"{len(narrow)} of the 2:4 layers have fewer than {semistructured.WIDE_ENOUGH} channels "
                         f"({', '.join(narrow[:6])}{', ...' if len(narrow) > 6 else ''}); TensorRT's sparse kernels "
                         "rarely beat dense ones that narrow, so expect little gain from them")
        for note in notes:
            ctx.note("prune", note)
        ctx.sparse_layers = tuple(names)
        recovered = result.accuracy if result else masked
        ctx.accuracy, ctx.accuracy_source = recovered, "pytorch"
        return model, {"step": "2:4", "kind": "2:4 sparsity", "layers": names, "narrow_layers": narrow,
                       "macs": measure.count_macs(model, ctx.input_shape), "params": measure.count_params(model),
                       "size_bytes": measure.state_dict_bytes(model), "accuracy_pruned": masked,
                       "accuracy_recovered": recovered}

    # --- settings and files --------------------------------------------------------------------

    def channel_pruning(self, ctx: RunContext, model: nn.Module, example: torch.Tensor) -> ChannelPruning:
        protect = tuple(protected_layers(model, example, self.protect))
        return ChannelPruning(importance=self.importance, global_ranking=self.scope == "global",
                              round_to=self.round_to or ctx.target.channel_multiple, protect=protect)

    def wants_2_4(self, ctx: RunContext) -> bool:
        return ctx.target.sparsity_2_4 if self.sparsity_2_4 == "auto" else bool(self.sparsity_2_4)

    def save(self, model: nn.Module, ctx: RunContext) -> None:
        save_weights(model, ctx.stage_dir / "model.safetensors")
        write_json(ctx.stage_dir / "pruned.json", {"sizes": layer_sizes(model), "sparse_layers": list(ctx.sparse_layers),
                                                   "stage": json.loads(self.model_dump_json())})
