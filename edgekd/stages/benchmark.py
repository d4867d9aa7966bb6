"""The ``benchmark`` stage: latency of the exported model, measured where it can be, labelled always.

On this machine the ONNX model is timed with ONNX Runtime (warm-up, then at least 200 timed
runs per batch size; median, p90, p99), and ONNX Runtime's profiler breaks batch 1 down per
layer. Those figures describe *this* machine. For any target other than ``host`` they are
reported as host figures, and the target's own latency is a roofline *estimate* from its
profile (:mod:`edgekd.estimate`), labelled ``estimated``: it becomes a measurement only when
``edgekd bench`` runs on the device and ``edgekd report --merge`` adds the record.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from edgekd import console
from edgekd.bench import measure_host_latency
from edgekd.context import RunContext
from edgekd.errors import EdgekdError
from edgekd.estimate import estimate_latency
from edgekd.records import LatencyKind, LatencyRecord
from edgekd.stages.base import Stage
from edgekd.targets import load_target


class BenchmarkStage(Stage):
    """Measure host latency of ``model.onnx`` at the profile's batch sizes (plus ``batch_sizes``)."""

    stage: Literal["benchmark"] = "benchmark"
    warmup: int = Field(20, ge=0)
    runs: int = Field(200, ge=200)
    batch_sizes: tuple[int, ...] = Field((1, 64), min_length=1)

    def apply(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        if ctx.onnx_path is None:
            raise EdgekdError("the benchmark stage needs an exported model: put an export stage before it")
        host = ctx.target if ctx.target.is_host else load_target("host")
        records = measure_host_latency(ctx.onnx_path, ctx.input_shape, self.batch_sizes, device=host,
                                       runs=self.runs, warmup=self.warmup)
        for r in records:
            console.info(f"benchmark: batch {r.batch}: median {r.ms:.3f} ms, p90 {r.p90_ms:.3f}, p99 {r.p99_ms:.3f} "
                         f"(ONNX Runtime, {r.threads} threads, this machine)")
        ctx.latency.extend(records)
        from edgekd.runtime.onnxruntime import profile_layers  # ONNX Runtime loads only when measuring

        ctx.details["layer_times"] = {"batch": 1, "device": records[0].device,
                                      "nodes": profile_layers(ctx.onnx_path, ctx.input_shape, 1, threads=host.threads)}
        if not ctx.target.is_host:
            ctx.latency.extend(target_estimates(ctx))
        return model


def target_estimates(ctx: RunContext) -> list[LatencyRecord]:
    """The target's latency per batch size: a labelled roofline estimate, or not-measured without peaks."""
    import onnx

    target, model = ctx.target, None
    how = f"run `edgekd bench model.onnx --target {target.name}` on the device, then `edgekd report RUN --merge`"
    records = []
    for batch in target.batch_sizes:
        if target.peak is None or target.memory_bandwidth_gbs is None:
            records.append(LatencyRecord(batch=batch, device=target.name, kind=LatencyKind.NOT_MEASURED,
                                         runtime=target.runtime.value,
                                         note=f"the profile has no peak numbers to estimate from; {how}"))
            continue
        model = model or onnx.load(str(ctx.onnx_path))
        estimate = estimate_latency(model, target, batch)
        records.append(LatencyRecord(
            batch=batch, device=target.name, kind=LatencyKind.ESTIMATED, runtime=target.runtime.value, ms=estimate.ms,
            note=f"roofline estimate of {ctx.onnx_path.name} from the profile's peaks "
                 f"({estimate.compute_bound_nodes} compute-bound, {estimate.memory_bound_nodes} memory-bound nodes); "
                 f"not a measurement: {how}"))
    return records
