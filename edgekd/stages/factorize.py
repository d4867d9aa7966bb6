"""The ``factorize`` stage: replace convs and linears by low-rank pairs or triples, chosen per
layer to meet a whole-model MAC target, then recover with KD from the unfactorized model.

Methods (:mod:`edgekd.factorize.decompose`): truncated SVD for ``Linear``; spatial SVD
(Jaderberg et al. 2014) or Tucker-2 (Kim et al. 2016) for ``Conv2d``. Rank selection
(:mod:`edgekd.factorize.select`): retained singular-value energy, a uniform per-layer MAC
fraction, or AIMET-style greedy selection scored on held-out *training* images (the
report split stays untouched until the run is graded). Depthwise and grouped convs, and layers
whose chosen rank would not cut MACs, are left alone and the report says why.
"""

from __future__ import annotations

import copy
import json
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Subset

from edgekd import console, measure
from edgekd.atomic import write_json
from edgekd.context import RunContext
from edgekd.data import make_loader
from edgekd.distill.recovery import RecoveryConfig, recover
from edgekd.factorize.layers import Method
from edgekd.factorize.lowrank import CANDIDATES, Selection, factorize_model, rebuild
from edgekd.models.loading import save_weights
from edgekd.onnx_export import export_onnx
from edgekd.runtime.compare import HostComparer, slower_ones
from edgekd.stages.base import Handoff, ReportRow, Stage
from edgekd.judge import judge


class FactorizeStage(Stage):
    """Low-rank factorization to a MAC target with per-layer rank selection, then KD recovery."""

    stage: Literal["factorize"] = "factorize"
    public_name: ClassVar[str | None] = "Factorize"
    conv: Literal["spatial-svd", "tucker2"] = "spatial-svd"
    linear: bool = Field(True, description="also factorize Linear layers by SVD")
    selection: Selection = Selection.GREEDY
    reduction: float | None = Field(0.4, gt=0, lt=1, description="fraction of the model's MACs to remove")
    energy: float | None = Field(None, gt=0, le=1, description="with selection: energy and no reduction")
    candidates: tuple[float, ...] = Field(CANDIDATES, description="per-layer MAC fractions the greedy search scores")
    score_images: int = Field(1000, ge=100, description="held-out training images that score greedy candidates")
    skip: tuple[str, ...] = Field((), description="layer name patterns to leave alone")
    round_to: int | None = Field(None, ge=1, description="rank multiple; default: the target's channel_multiple")
    report_batches: tuple[int, ...] = (1, 64)
    recovery: RecoveryConfig = RecoveryConfig()

    @model_validator(mode="after")
    def _one_goal(self) -> "FactorizeStage":
        if self.energy is not None and (self.selection is not Selection.ENERGY or self.reduction is not None):
            raise ValueError("energy is a goal of its own: use it with selection: energy and reduction: null")
        if self.energy is None and self.reduction is None:
            raise ValueError("give a reduction (a MAC target) or, with selection: energy, an energy")
        return self

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        original = copy.deepcopy(given.model).eval()
        total = measure.count_macs(original, ctx.input_shape)
        result = factorize_model(original, torch.zeros(1, *ctx.input_shape), reduction=self.reduction,
                                 energy=self.energy, conv=Method(self.conv), linear=self.linear,
                                 selection=self.selection, score=self.scorer(ctx), candidates=self.candidates,
                                 skip=self.skip, round_to=self.round_to or ctx.target.channel_multiple)
        model = result.model
        after = measure.count_macs(model, ctx.input_shape)
        factorized_acc = ctx.score(model)
        recovered_by = recover(model, original, ctx.data, self.recovery, checkpoint=ctx.stage_dir / "train-recovery.pt",
                               cache_dir=ctx.cache_dir, progress=ctx.progress, metric=ctx.metric, loss=ctx.loss)
        recovered = recovered_by.accuracy if recovered_by else factorized_acc
        comparisons = self.host_comparisons(original, model, ctx)
        if slower_ones(comparisons):
            row.note("factorize", f"the factorized model runs slower than the original on this host "
                                  f"({slower_ones(comparisons)}): ranks that are not multiples of the runtime's "
                                  "channel blocking, or small layers split into several ops, cost more than they "
                                  "save; raise round_to or skip the small layers")
        console.info(f"factorize: {len(result.plan)} layers, MACs {total:,} → {after:,} ({1 - after / total:.1%} "
                     f"fewer); accuracy {factorized_acc:.4f} → {recovered:.4f} after recovery")
        row.measured(recovered, "pytorch")
        row.details.update(selection=self.selection.value, conv_method=self.conv, macs_before=total, macs_after=after,
                           macs_reduction=1 - after / total, accuracy_before=ctx.score(original),
                           accuracy_factorized=factorized_acc, accuracy_recovered=recovered,
                           host_latency=[c.to_dict() for c in comparisons],
                           layers=[c.to_dict() for c in result.choices])
        save_weights(model, ctx.stage_dir / "model.safetensors")
        write_json(ctx.stage_dir / "factorized.json", result.plan)
        return given.with_model(model)

    def host_comparisons(self, original: nn.Module, model: nn.Module, ctx: RunContext) -> list:
        """The factorized model timed against the original on this host, for the report row (not in search builds)."""
        if not ctx.report_timings:
            return []
        with HostComparer(export_onnx(original, ctx.input_shape), ctx.input_shape, threads=ctx.host_threads) as timer:
            return timer.compare(export_onnx(model, ctx.input_shape), self.report_batches)

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        plan = json.loads((ctx.stage_dir / "factorized.json").read_text())
        model = rebuild(given.model, torch.zeros(1, *ctx.input_shape), plan)
        model.load_state_dict(load_file(ctx.stage_dir / "model.safetensors"))
        return given.with_model(model)

    def scorer(self, ctx: RunContext):
        """Accuracy on the first ``score_images`` training images, unaugmented (not the selection or report split)."""
        if self.selection is not Selection.GREEDY:
            return None
        count = min(self.score_images, len(ctx.data.train))
        loader = make_loader(Subset(ctx.data.train, range(count)), ctx.data.info, batch_size=500, train=False)
        return lambda m: judge(m, loader, ctx.metric)
