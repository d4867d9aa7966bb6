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

from typing import ClassVar

from pydantic import Field

from edgekd import console
from edgekd.context import RunContext
from edgekd.estimate import estimate_records
from edgekd.runtime.host import measure_host_latency
from edgekd.stages.base import Handoff, ReportRow, Stage
from edgekd.targets import load_target


class BenchmarkStage(Stage):
    """Measure host latency of ``model.onnx`` at the profile's batch sizes (plus ``batch_sizes``)."""

    stage: Literal["benchmark"] = "benchmark"
    public_name: ClassVar[str | None] = "Benchmark"
    needs: ClassVar[tuple[str, ...]] = ("onnx",)
    warmup: int = Field(20, ge=0)
    runs: int = Field(200, ge=200)
    batch_sizes: tuple[int, ...] = Field((1, 64), min_length=1)

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        onnx_path = given.onnx.path
        host = ctx.target if ctx.target.is_host else load_target("host")
        records = measure_host_latency(onnx_path, ctx.input_shape, self.batch_sizes, device=host,
                                       runs=self.runs, warmup=self.warmup)
        for r in records:
            console.info(f"benchmark: batch {r.batch}: median {r.ms:.3f} ms, p90 {r.p90_ms:.3f}, p99 {r.p99_ms:.3f} "
                         f"(ONNX Runtime, {r.threads} threads, this machine)")
        row.latency.extend(records)
        from edgekd.runtime.onnxruntime import profile_layers  # ONNX Runtime loads only when measuring

        row.details["layer_times"] = {"batch": 1, "device": records[0].device,
                                      "nodes": profile_layers(onnx_path, ctx.input_shape, 1, threads=host.threads)}
        if not ctx.target.is_host:
            row.latency.extend(estimate_records(onnx_path, ctx.target))
        return given
