"""The ``factorize`` stage: replace convs and linears by low-rank pairs or triples, chosen per
layer to meet a whole-model MAC target, then recover with KD from the unfactorized model.

Methods (:mod:`edgekd.factorize.decompose`): truncated SVD for ``Linear``; spatial SVD
(Jaderberg et al. 2014) or Tucker-2 (Kim et al. 2016) for ``Conv2d``. Rank selection
(:mod:`edgekd.factorize.select`): retained singular-value energy, a uniform per-layer MAC
fraction, or AIMET-style greedy selection scored on held-out *training* images (the
validation set stays untouched for the report). Depthwise and grouped convs, and layers
whose chosen rank would not cut MACs, are left alone and the report says why.
"""

from __future__ import annotations

import copy
import json
from typing import Literal

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
from edgekd.errors import EdgekdError, FactorizeError
from edgekd.factorize import select
from edgekd.factorize.decompose import decompose, set_module
from edgekd.factorize.layers import Method, macs_at_rank, method_for, rank_for_macs, why_not
from edgekd.models.loading import save_weights
from edgekd.models.tracing import trace_layers
from edgekd.runtime.compare import HostComparer
from edgekd.stages.base import Stage
from edgekd.train import accuracy


class FactorizeStage(Stage):
    """Low-rank factorization to a MAC target with per-layer rank selection, then KD recovery."""

    stage: Literal["factorize"] = "factorize"
    conv: Literal["spatial-svd", "tucker2"] = "spatial-svd"
    linear: bool = Field(True, description="also factorize Linear layers by SVD")
    selection: Literal["energy", "uniform", "greedy"] = "greedy"
    reduction: float | None = Field(0.4, gt=0, lt=1, description="fraction of the model's MACs to remove")
    energy: float | None = Field(None, gt=0, le=1, description="with selection: energy and no reduction")
    candidates: tuple[float, ...] = Field((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                          description="per-layer MAC fractions the greedy search scores")
    score_images: int = Field(1000, ge=100, description="held-out training images that score greedy candidates")
    skip: tuple[str, ...] = Field((), description="layer name patterns to leave alone")
    round_to: int | None = Field(None, ge=1, description="rank multiple; default: the target's channel_multiple")
    report_batches: tuple[int, ...] = (1, 64)
    recovery: RecoveryConfig = RecoveryConfig()

    @model_validator(mode="after")
    def _one_goal(self) -> "FactorizeStage":
        if self.energy is not None and (self.selection != "energy" or self.reduction is not None):
            raise ValueError("energy is a goal of its own: use it with selection: energy and reduction: null")
        if self.energy is None and self.reduction is None:
            raise ValueError("give a reduction (a MAC target) or, with selection: energy, an energy")
        return self

    def apply(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        if model is None:
            raise EdgekdError("the factorize stage needs a model: put a teacher or distill stage before it")
        original = copy.deepcopy(model).eval()
        example = torch.zeros(1, *ctx.input_shape)
        total = measure.count_macs(original, ctx.input_shape)
        candidates, choices = self.eligible_layers(model, example)
        plan, effects = self.choose_ranks(model, candidates, total, ctx)
        for name, (layer, method) in candidates.items():
            if name in plan:
                set_module(model, name, decompose(layer, method, plan[name]))
                choices.append(select.Choice(name, method.value, plan[name], layer.macs,
                                             macs_at_rank(layer, method, plan[name]), effects.get(name)))
            else:
                choices.append(select.Choice(name, method.value, None, layer.macs, layer.macs, effects.get(name),
                                             skipped="the selection kept it whole (cutting it cost too much accuracy "
                                                     "or was not needed for the target)"))
        after = measure.count_macs(model, ctx.input_shape)
        factorized_acc = accuracy(model, ctx.val_loader)
        result = recover(model, original, ctx, self.recovery, checkpoint=ctx.stage_dir / "train-recovery.pt")
        recovered = result.accuracy if result else factorized_acc
        with HostComparer(original, ctx.input_shape, threads=ctx.host_threads) as t:
            latency = [c.to_dict() for c in t.compare(model, self.report_batches)]
        slower = [c for c in latency if c["speedup"] < 1]
        if slower:
            note = ("the factorized model runs slower than the original on this host (" + ", ".join(
                f"{c['speedup']:.2f}× at batch {c['batch']}" for c in slower) + "): ranks that are not multiples of "
                "the runtime's channel blocking, or small layers split into several ops, cost more than they save; "
                "raise round_to or skip the small layers")
            ctx.note("factorize", note)
        console.info(f"factorize: {len(plan)} layers, MACs {total:,} → {after:,} ({1 - after / total:.1%} fewer); "
                     f"accuracy {factorized_acc:.4f} → {recovered:.4f} after recovery")
        ctx.accuracy, ctx.accuracy_source = recovered, "pytorch"
        ctx.model_spec = None
        ctx.details.update(selection=self.selection, conv_method=self.conv, macs_before=total, macs_after=after,
                           macs_reduction=1 - after / total, accuracy_before=accuracy(original, ctx.val_loader),
                           accuracy_factorized=factorized_acc, accuracy_recovered=recovered, host_latency=latency,
                           layers=[c.to_dict() for c in choices])
        save_weights(model, ctx.stage_dir / "model.safetensors")
        write_json(ctx.stage_dir / "factorized.json", {n: [candidates[n][1].value, r] for n, r in plan.items()})
        return model

    def restore(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        plan = json.loads((ctx.stage_dir / "factorized.json").read_text())
        model = copy.deepcopy(model)
        layers = {layer.name: layer for layer in trace_layers(model, torch.zeros(1, *ctx.input_shape))}
        for name, (method, rank) in plan.items():
            set_module(model, name, decompose(layers[name], Method(method), rank))
        model.load_state_dict(load_file(ctx.stage_dir / "model.safetensors"))
        ctx.model_spec = None
        return model

    def eligible_layers(self, model: nn.Module, example: torch.Tensor):
        """({name: (layer, method)} to consider, [skipped choices with the reason])."""
        candidates, skipped = {}, []
        for layer in trace_layers(model, example):
            method = method_for(layer, Method(self.conv))
            reason = "Linear layers are excluded (linear: false)" if method is Method.SVD and not self.linear \
                else why_not(layer, method, self.skip)
            if reason:
                skipped.append(select.Choice(layer.name, method.value, None, layer.macs, layer.macs, skipped=reason))
            else:
                candidates[layer.name] = (layer, method)
        if not candidates:
            raise FactorizeError("no layer can be factorized (" + "; ".join(f"{c.layer}: {c.skipped}" for c in skipped)
                                 + ")")
        return candidates, skipped

    def choose_ranks(self, model: nn.Module, candidates, total: int,
                     ctx: RunContext) -> tuple[select.Plan, dict[str, float]]:
        """The rank per layer, and (greedy) each chosen cut's accuracy effect on the scoring images."""
        multiple = self.round_to or ctx.target.channel_multiple
        if self.energy is not None:
            return select.by_energy(candidates, self.energy, multiple), {}
        needed = round(self.reduction * total)
        reachable = select.saved_macs(candidates, select.by_fraction(candidates, min(self.candidates), multiple))
        if reachable < needed:
            raise FactorizeError(f"factorizable layers can save at most {reachable / total:.1%} of the MACs, not the "
                                 f"{self.reduction:.0%} asked for; lower reduction, or prune as well")
        if self.selection == "energy":
            plan = select.search(lambda e: select.by_energy(candidates, e, multiple), candidates, needed,
                                 low=0.0, high=1.0)
            return select.give_back_slack(candidates, plan, needed, multiple), {}
        if self.selection == "uniform":
            plan = select.search(lambda f: select.by_fraction(candidates, f, multiple), candidates, needed,
                                 low=0.0, high=1.0)
            return select.give_back_slack(candidates, plan, needed, multiple), {}
        score = self.scorer(ctx)
        scores = select.sensitivity(model, candidates, self.candidates, score, multiple)
        baseline = score(model)
        plan = select.greedy(candidates, scores, needed, multiple)
        most_harmed = sorted(plan, key=lambda n: min(scores[n].values(), default=baseline))
        plan = select.give_back_slack(candidates, plan, needed, multiple, most_harmed)
        effects = {}
        for name, rank in plan.items():
            layer, method = candidates[name]
            fraction = next((f for f in scores[name] if rank_for_macs(layer, method, f, multiple) == rank), None)
            if fraction is not None:
                effects[name] = round(scores[name][fraction] - baseline, 4)
        return plan, effects

    def scorer(self, ctx: RunContext):
        """Accuracy on the first ``score_images`` training images, unaugmented (not the validation set)."""
        count = min(self.score_images, len(ctx.data.train))
        loader = make_loader(Subset(ctx.data.train, range(count)), ctx.data.info, batch_size=500, train=False)
        return lambda m: accuracy(m, loader)
