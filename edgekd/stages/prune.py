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
import json
from typing import ClassVar, Literal

import torch
from pydantic import Field
from safetensors.torch import load_file
from torch import nn

from edgekd import console, measure
from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import make_loader
from edgekd.distill.recovery import RecoveryConfig, recover
from edgekd.errors import PruneError
from edgekd.models.loading import save_weights
from edgekd.prune import semistructured
from edgekd.prune.architecture import layer_sizes, resize_like
from edgekd.prune.goal import Metric, Scope, prune_model
from edgekd.prune.importance import Importance
from edgekd.onnx_export import export_onnx
from edgekd.runtime.compare import HostComparer
from edgekd.runtime.host import can_stand_for
from edgekd.stages.base import Handoff, ReportRow, Stage


class PruneStage(Stage):
    """Structured channel pruning to a goal, KD recovery, and 2:4 sparsity where the target uses it."""

    stage: Literal["prune"] = "prune"
    public_name: ClassVar[str | None] = "Prune"
    metric: Metric = Metric.MACS
    reduction: float = Field(0.5, gt=0, lt=1, description="fraction of the metric to remove")
    importance: Importance = Importance.L2
    scope: Scope = Scope.UNIFORM
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

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        if self.metric is Metric.LATENCY and not can_stand_for(ctx.target):
            raise PruneError(f"metric: latency times the model here, but this machine cannot stand for "
                             f"{ctx.target.name}; use metric: macs")
        model = given.model
        dense = copy.deepcopy(model).eval()
        before = {"macs": measure.count_macs(dense, ctx.input_shape), "params": measure.count_params(dense)}
        rows, sparse = [], ()
        with HostComparer(export_onnx(dense, ctx.input_shape), ctx.input_shape, threads=ctx.host_threads) as timer:
            for step in range(1, self.steps + 1):
                model, step_row = self.prune_step(model, step, dense, before, timer, ctx, row)
                rows.append(step_row)
            if self.wants_2_4(ctx):
                model, step_row = self.sparsify_step(model, dense, ctx, row)
                rows.append(step_row)
                sparse = tuple(step_row["layers"])
        row.details.update(metric=self.metric.value, reduction=self.reduction, importance=self.importance.value,
                           scope=self.scope.value, round_to=self.channel_multiple(ctx),
                           protected=rows[0]["protected"], steps=rows,
                           macs_before=before["macs"], params_before=before["params"])
        save_weights(model, ctx.stage_dir / "model.safetensors")
        write_json(ctx.stage_dir / "pruned.json", {"sizes": layer_sizes(model), "sparse_layers": list(sparse),
                                                   "stage": self.settings()})
        return given.with_model(model, sparse_layers=sparse)  # no longer a zoo architecture

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        record = json.loads((ctx.stage_dir / "pruned.json").read_text())
        pruned = resize_like(copy.deepcopy(given.model), record["sizes"],
                             load_file(ctx.stage_dir / "model.safetensors"))
        return given.with_model(pruned, sparse_layers=tuple(record["sparse_layers"]))

    # --- the steps ---------------------------------------------------------------------------

    def prune_step(self, model, step, dense, before, timer, ctx, row) -> tuple[nn.Module, dict]:
        """One round: reach this step's share of the goal, check speed (last round), recover."""
        saved = ctx.stage_dir / f"train-step{step}-pruned.json"
        if saved.exists():  # an interrupted run: rebuild this step's pruned model, then resume recovery
            step_row = json.loads(saved.read_text())
            model = resize_like(copy.deepcopy(model), step_row.pop("sizes"),
                                load_file(ctx.stage_dir / f"train-step{step}-pruned.safetensors"))
        else:
            model, step_row = self.prune_to_goal(model, step, before, timer, ctx, row)
            save_weights(model, ctx.stage_dir / f"train-step{step}-pruned.safetensors")
            write_json(saved, {**step_row, "sizes": layer_sizes(model)})
        result = recover(model, dense, ctx.data, self.recovery, checkpoint=ctx.stage_dir / f"train-step{step}.pt",
                         cache_dir=ctx.cache_dir, progress=ctx.progress, metric=ctx.metric, loss=ctx.loss)
        step_row["accuracy_recovered"] = result.accuracy if result else step_row["accuracy_pruned"]
        if ctx.report_timings:
            step_row["host_latency"] = [c.to_dict() for c in timer.compare(export_onnx(model, ctx.input_shape),
                                                                           self.report_batches)]
        console.info(f"prune: step {step}/{self.steps}: MACs {step_row['macs']:,} "
                     f"({step_row['macs'] / before['macs']:.1%}), accuracy {step_row['accuracy_pruned']:.4f} → "
                     f"{step_row['accuracy_recovered']:.4f} after recovery")
        row.measured(step_row["accuracy_recovered"], "pytorch")
        return model, step_row

    def prune_to_goal(self, model, step, before, timer, ctx, row) -> tuple[nn.Module, dict]:
        """Prune to this step's share of the goal; the reductions are of the unpruned model's metric."""
        share = self.reduction * step / self.steps
        gradients = make_loader(ctx.data.train, ctx.data.info, batch_size=64, train=False)
        result = prune_model(model, torch.zeros(1, *ctx.input_shape), reduction=self.reduction_now(model, share, before, ctx.input_shape),
                             metric=self.metric, importance=self.importance, scope=self.scope,
                             round_to=self.channel_multiple(ctx), protect=self.protect, tolerance=self.tolerance,
                             gradients=gradients, gradient_batches=self.taylor_batches,
                             latency=lambda m: 1 / timer.compare(export_onnx(m, ctx.input_shape),
                                                                   (self.latency_batch,))[0].speedup)
        pruned = result.model
        for note in result.notes:
            row.note("prune", note)
        if step == self.steps and self.latency_check:
            self.check_not_slower(pruned, timer, ctx, row)
        after = {"macs": measure.count_macs(pruned, ctx.input_shape), "params": measure.count_params(pruned)}
        reached = 1 - after[self.metric.value] / before[self.metric.value] if self.metric.value in after else result.reduction
        step_row = {"step": step, "kind": "channels", "channel_ratio": round(result.channel_ratio, 4),
                    f"{self.metric.value}_reduction": round(reached, 4), "protected": list(result.how.protect),
                    "channels_kept": result.kept, **after, "size_bytes": measure.state_dict_bytes(pruned),
                    "accuracy_pruned": ctx.score(pruned)}
        return pruned, step_row

    def reduction_now(self, model: nn.Module, share: float, before: dict, input_shape: tuple[int, ...]) -> float:
        """``share`` of the unpruned model's MACs or parameters, as a reduction of ``model``'s (later steps)."""
        if self.metric not in (Metric.MACS, Metric.PARAMS):
            return share  # latency is timed against the unpruned model; channels are per step
        now = measure.count_macs(model, input_shape) if self.metric is Metric.MACS else measure.count_params(model)
        return 1 - (1 - share) * before[self.metric.value] / now

    def check_not_slower(self, pruned: nn.Module, timer: HostComparer, ctx: RunContext, row: ReportRow) -> None:
        """Refuse a pruned model that runs slower than the unpruned one on the target's runtime here."""
        if not can_stand_for(ctx.target):
            row.note("prune", f"this machine cannot stand for {ctx.target.name}, so the slower-than-dense check was "
                              "not made; measure on the device with `edgekd bench`")
            return
        comparison = timer.compare(export_onnx(pruned, ctx.input_shape), (self.latency_batch,))[0]
        if comparison.slower:
            raise PruneError(
                f"the pruned model is slower than the unpruned one on this machine ({comparison.candidate.median_ms:.3f} "
                f"vs {comparison.baseline.median_ms:.3f} ms at batch {self.latency_batch}): odd channel counts miss "
                "the fast kernels; raise round_to (e.g. 16), prune more, or set latency_check: false")

    def sparsify_step(self, model, dense, ctx, row) -> tuple[nn.Module, dict]:
        """2:4 masks on every eligible layer, fine-tuned with the masks fixed, then baked in."""
        names = semistructured.sparsify(model)
        if not names:
            raise PruneError("no layer can take 2:4 sparsity (it needs dense convs or linears with a multiple of 4 "
                             "input channels); set sparsity_2_4: false")
        masked = ctx.score(model)
        epochs = self.recovery.train.epochs if self.sparse_recovery_epochs is None else self.sparse_recovery_epochs
        result = recover(model, dense, ctx.data, self.recovery, checkpoint=ctx.stage_dir / "train-sparse.pt",
                         cache_dir=ctx.cache_dir, epochs=epochs, progress=ctx.progress, metric=ctx.metric,
                         loss=ctx.loss)
        semistructured.bake(model)
        narrow = semistructured.narrow_layers(model, names)
        row.note("prune", f"2:4 sparsity on {len(names)} layers: TensorRT runs them with sparse Tensor Core kernels on "
                          f"{ctx.target.name}; a CPU runtime runs them dense, so host latency cannot show the speed-up")
        if narrow:
            row.note("prune", f"{len(narrow)} of the 2:4 layers have fewer than {semistructured.WIDE_ENOUGH} channels "
                              f"({', '.join(narrow[:6])}{', ...' if len(narrow) > 6 else ''}); TensorRT's sparse "
                              "kernels rarely beat dense ones that narrow, so expect little gain from them")
        recovered = result.accuracy if result else masked
        row.measured(recovered, "pytorch")
        return model, {"step": "2:4", "kind": "2:4 sparsity", "layers": names, "narrow_layers": narrow,
                       "macs": measure.count_macs(model, ctx.input_shape), "params": measure.count_params(model),
                       "size_bytes": measure.state_dict_bytes(model), "accuracy_pruned": masked,
                       "accuracy_recovered": recovered}

    # --- settings ------------------------------------------------------------------------------

    def channel_multiple(self, ctx: RunContext) -> int:
        return self.round_to or ctx.target.channel_multiple

    def wants_2_4(self, ctx: RunContext) -> bool:
        return ctx.target.sparsity_2_4 if self.sparsity_2_4 == "auto" else bool(self.sparsity_2_4)
