"""ONNX Runtime on the CPU: accuracy over a dataset, and latency with percentiles."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from torch.utils.data import DataLoader


def create_session(onnx_path: str | Path | bytes, *, threads: int | None = None,
                   spinning: bool = True) -> ort.InferenceSession:
    """A CPU session with all graph optimizations; ``threads`` intra-op threads (None: ORT's default).

    ``onnx_path`` may also be a serialized model (bytes), for models not written to disk.
    ``spinning``: the intra-op threads busy-wait for the next run (ORT's default, as deployed).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_logits(session: ort.InferenceSession, loader: DataLoader):
    """Yield (ONNX logits, labels, images) for every batch of ``loader``."""
    name = session.get_inputs()[0].name
    for images, labels, *_ in loader:
        yield session.run(None, {name: images.numpy()})[0], labels.numpy(), images


def evaluate(onnx_path: str | Path | bytes, loader: DataLoader, *, threads: int | None = None,
             metric=None) -> float:
    """``metric`` (default top-1) of the ONNX model over every batch of ``loader``: :func:`edgekd.judge.judge`."""
    from edgekd.judge import judge

    return judge(onnx_path, loader, metric, threads=threads)


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per batch over ``runs`` timed runs (after warm-up)."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    runs: int


def measure_latency(onnx_path: str | Path, input_shape: tuple[int, ...], batch: int, *,
                    threads: int | None = None, warmup: int = 20, runs: int = 200, seed: int = 0) -> LatencyStats:
    """Time ``runs`` inferences of one fixed random batch, after ``warmup`` untimed ones."""
    session = create_session(onnx_path, threads=threads)
    feed = {session.get_inputs()[0].name:
            np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32)}
    return time_calls(lambda: session.run(None, feed), warmup=warmup, runs=runs)


def time_calls(call, *, warmup: int, runs: int) -> LatencyStats:
    """Milliseconds of ``runs`` calls of ``call`` after ``warmup`` untimed ones (any runtime)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return summarize(times)


def summarize(times_ms: list[float]) -> LatencyStats:
    ordered = sorted(times_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return LatencyStats(median_ms=statistics.median(ordered), p90_ms=pick(0.90), p99_ms=pick(0.99), runs=len(ordered))


def compare_latency(onnx_paths: list[str | Path], input_shape: tuple[int, ...], batch: int, *,
                    threads: int | None = None, warmup: int = 10, runs: int = 100, seed: int = 0) -> list[LatencyStats]:
    """Time several models side by side: each round runs every model once, so drift hits all alike.

    Ratios of the returned medians are what a comparison should quote on a shared machine. The
    sessions' threads do not spin between runs: with ORT's default spinning, the threads of the
    model that just ran kept busy-waiting while the next one ran, and on 2 cores two identical
    models measured up to 1.5x apart (4.5-6.7 ms for a 2.7 ms model, cnn/cnn-small 2.2-3.7x);
    without it identical models agree within 1% and that ratio is 3.16-3.17x (batch 64, three calls).
    The price: each run pays the threads' wake-up (~30 us here), so at batch 1 a model of 0.08 ms
    measures 0.11-0.12 ms and speed-ups between such tiny models read low (2.2x for that 3x pair),
    never high; identical models still agree within 5%.
    """
    sessions = [create_session(p, threads=threads, spinning=False) for p in onnx_paths]
    batch_input = np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32)
    feeds = [{s.get_inputs()[0].name: batch_input} for s in sessions]
    for _ in range(warmup):
        for session, feed in zip(sessions, feeds):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for session, feed, spent in zip(sessions, feeds, times):
            t0 = time.perf_counter()
            session.run(None, feed)
            spent.append((time.perf_counter() - t0) * 1000)
    return [summarize(t) for t in times]


def profile_layers(onnx_path: str | Path, input_shape: tuple[int, ...], batch: int, *, threads: int | None = None,
                   runs: int = 50, top: int = 15) -> list[dict]:
    """Mean microseconds per run of the ``top`` slowest nodes, from ONNX Runtime's own profiler.

    Node names are those of the optimized graph ONNX Runtime runs (fused nodes carry the fusion's name).
    """
    import json
    import tempfile

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="edgekd-profile-") as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.zeros((batch, *input_shape), np.float32)}
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[tuple[str, str], float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            key = (event["name"][: -len("_kernel_time")], event.get("args", {}).get("op_name", "?"))
            totals[key] = totals.get(key, 0.0) + event["dur"]
    slowest = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [{"node": node, "op": op, "us": round(us / runs, 2)} for (node, op), us in slowest]
