"""Side-by-side host latency of ONNX models through ONNX Runtime, for before/after claims.

A compression stage must show that its model is faster than the one it started from; on a
shared machine only measurements interleaved in one run make such a ratio trustworthy. The
models come in as ONNX (a ``ModelProto`` or a file): exporting a PyTorch model is the caller's
step (:func:`edgekd.onnx_export.export_onnx`), so nothing here reaches up to the exporter.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from edgekd.targets import available_cores

if TYPE_CHECKING:
    from edgekd.runtime.onnxruntime import LatencyStats


TIMING_NOISE = 1.05  # side-by-side ratios within 5% of even are noise on a shared machine


@dataclass(frozen=True)
class Comparison:
    """Median ms per batch for a baseline and a candidate, timed alternately."""

    batch: int
    baseline: LatencyStats
    candidate: LatencyStats

    @property
    def speedup(self) -> float:
        """baseline / candidate: above 1 means the candidate is faster."""
        return self.baseline.median_ms / self.candidate.median_ms

    @property
    def slower(self) -> bool:
        """The candidate is slower than the baseline by more than timing noise."""
        return self.speedup < 1 / TIMING_NOISE

    def to_dict(self) -> dict:
        return {"batch": self.batch, "baseline_ms": round(self.baseline.median_ms, 4),
                "candidate_ms": round(self.candidate.median_ms, 4), "speedup": round(self.speedup, 3),
                "runs": self.candidate.runs}


def slower_ones(comparisons: list[Comparison]) -> str:
    """'0.87× at batch 64, ...' for the comparisons where the candidate is slower; '' when none is."""
    return ", ".join(f"{c.speedup:.2f}× at batch {c.batch}" for c in comparisons if c.slower)


OnnxModel = onnx.ModelProto | bytes | Path  # in memory (a proto or its bytes), or a file such as an int8 model


class HostComparer:
    """Holds a baseline ONNX model, then times candidates against it on this machine's CPU."""

    def __init__(self, baseline: OnnxModel, input_shape: tuple[int, ...], *, threads: int | None = None,
                 runs: int = 100):
        self._dir = tempfile.TemporaryDirectory(prefix="edgekd-latency-")
        self.input_shape = input_shape
        self.threads = threads or available_cores()
        self.runs = runs
        self.baseline_path = self.save(baseline, "baseline")

    def save(self, model: OnnxModel, name: str) -> Path:
        """``model`` as a file ONNX Runtime can open (a file is used where it is)."""
        if isinstance(model, Path):
            return model
        if not isinstance(model, (onnx.ModelProto, bytes)):
            raise TypeError(f"the host comparer times ONNX models, not a {type(model).__name__}: export it first "
                            "(edgekd.onnx_export.export_onnx)")
        path = Path(self._dir.name) / f"{name}.onnx"
        path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
        return path

    def compare(self, candidate: OnnxModel, batch_sizes: tuple[int, ...]) -> list[Comparison]:
        """Time ``candidate`` (an exported model, or an ONNX file such as an int8 model) against the baseline."""
        from edgekd.runtime.onnxruntime import compare_latency  # ONNX Runtime loads only when timing

        path = self.save(candidate, "candidate")
        out = []
        for batch in batch_sizes:
            base, cand = compare_latency([self.baseline_path, path], self.input_shape, batch,
                                         threads=self.threads, runs=self.runs)
            out.append(Comparison(batch, base, cand))
        return out

    def compare_rounds(self, candidate: OnnxModel, batch_sizes: tuple[int, ...],
                       rounds: int) -> tuple[list[Comparison], list[list[Comparison]]]:
        """``rounds`` comparisons, each with fresh sessions: per batch size the median one, and all of them.

        On a shared machine one round can be off by 10% or more; the median round is the claim.
        """
        results = [self.compare(candidate, batch_sizes) for _ in range(rounds)]
        median = [sorted((r[i] for r in results), key=lambda c: c.speedup)[rounds // 2] for i in range(len(batch_sizes))]
        return median, results

    def close(self) -> None:
        self._dir.cleanup()

    def __enter__(self) -> HostComparer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
