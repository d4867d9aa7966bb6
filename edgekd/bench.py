"""Latency measured on the machine edgekd runs on, labelled with the device it stands for.

``bench_onnx(path, target)`` turns a target's "not measured" into a measurement when run on
that device: it refuses to measure on a machine that cannot be the target (an x86 host for
a Raspberry Pi profile, a machine without TensorRT for a Jetson profile).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgekd.errors import EdgekdError
from edgekd.records import LatencyKind, LatencyRecord
from edgekd.runtime.descriptor import Measure, descriptor
from edgekd.runtime.host import check_can_stand_for, measure_host_latency
from edgekd.targets import TargetProfile, load_target


def bench_onnx(onnx_path: str | Path, target: str, *, batch_sizes: tuple[int, ...] | None = None,
               runs: int = 200) -> list[LatencyRecord]:
    """Measure ``onnx_path`` with ``target``'s runtime, here, if this machine can stand for it."""
    onnx_path = Path(onnx_path)
    profile = load_target(target)
    check_can_stand_for(profile)
    shape = onnx_input_shape(onnx_path)
    if descriptor(profile.runtime).measure is Measure.ENGINE:  # TensorRT: the only engine-measured runtime so far
        return measure_tensorrt_latency(onnx_path, shape, batch_sizes or profile.batch_sizes, device=profile,
                                        runs=runs)
    return measure_host_latency(onnx_path, shape, batch_sizes or profile.batch_sizes, device=profile, runs=runs)


def measure_tensorrt_latency(onnx_path: Path, input_shape: tuple[int, ...], batch_sizes, *, device: TargetProfile,
                             runs: int = 200, warmup: int = 50) -> list[LatencyRecord]:
    """Build ``model.engine`` beside the ONNX file (timing cache kept) and time it at each batch size."""
    import numpy as np

    from edgekd.runtime import tensorrt
    from edgekd.runtime.onnxruntime import time_calls

    engine_path = tensorrt.build_engine(onnx_path, device, input_shape, sparse=device.sparsity_2_4,
                                        engine_path=onnx_path.with_name("model.engine"),
                                        timing_cache=onnx_path.with_name("timing.cache"))
    engine = tensorrt.Engine(engine_path)
    records = []
    for batch in sorted(set(batch_sizes)):
        batch_input = np.zeros((batch, *input_shape), np.float32)
        stats = time_calls(lambda: engine.run(batch_input), warmup=warmup, runs=runs)  # noqa: B023 (called here)
        records.append(LatencyRecord(batch=batch, device=f"{device.name} (this machine)", kind=LatencyKind.MEASURED,
                                     runtime="tensorrt", ms=stats.median_ms, p90_ms=stats.p90_ms,
                                     p99_ms=stats.p99_ms, runs=stats.runs,
                                     note="includes host-device copies of the input and output"))
    return records


def onnx_input_shape(onnx_path: Path) -> tuple[int, ...]:
    """The model input's shape without the batch axis (which must be the only dynamic one)."""
    if not onnx_path.is_file():
        raise EdgekdError(f"{onnx_path} does not exist; pass the model.onnx of a run folder")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise EdgekdError(f"{onnx_path} is not a readable ONNX model ({type(exc).__name__})") from None
    dims = model.graph.input[0].type.tensor_type.shape.dim[1:]
    if not dims or any(d.dim_value <= 0 for d in dims):
        raise EdgekdError(f"{onnx_path}: only the batch axis may be dynamic; its input is "
                          f"{[d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]}")
    return tuple(d.dim_value for d in dims)
