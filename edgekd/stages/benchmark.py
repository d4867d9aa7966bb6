"""The ``benchmark`` stage: latency of the exported model, measured where it can be, labelled always.

On this machine the ONNX model is timed with ONNX Runtime (warm-up, then at least 200 timed
runs per batch size; median, p90, p99). Those figures describe *this* machine. For any target
other than ``host`` they are reported as host figures, and the target's own latency is marked
``not-measured``: it becomes a measurement only when ``edgekd bench`` runs on the device.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from edgekd import console
from edgekd.bench import measure_host_latency
from edgekd.context import RunContext
from edgekd.errors import EdgekdError
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
        if not ctx.target.is_host:
            for batch in ctx.target.batch_sizes:
                ctx.latency.append(LatencyRecord(
                    batch=batch, device=ctx.target.name, kind=LatencyKind.NOT_MEASURED, runtime=ctx.target.runtime.value,
                    note=f"no {ctx.target.name} here; run `edgekd bench model.onnx --target {ctx.target.name}` "
                         "on the device to measure"))
        return model
