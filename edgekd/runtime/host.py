"""This machine as a measuring device: ONNX Runtime latency here, and whether here can stand for a target.

A latency figure is labelled with the device it was measured on. Measuring "for" a target is only
honest where this machine is that kind of device: for a runtime measured on the host (its descriptor's
``measure: host``), the same ISA family and features; for one measured with its own engine (``measure:
engine``: TensorRT), that runtime installed here. :func:`check_can_stand_for` refuses otherwise, with what
to do instead.
"""

from __future__ import annotations

import platform
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.records import LatencyKind, LatencyRecord
from edgekd.runtime.descriptor import Measure, descriptor
from edgekd.targets import TargetProfile, available_cores, read_cpuinfo

ARM_FLAGS = {"neon", "dotprod", "i8mm"}


def measure_host_latency(onnx_path: Path, input_shape: tuple[int, ...], batch_sizes, *, device: TargetProfile,
                         runs: int = 200, warmup: int = 20) -> list[LatencyRecord]:
    """ONNX Runtime latency on this machine with the profile's threads, one record per batch size."""
    from edgekd.runtime import get_runtime

    ort = get_runtime("onnxruntime")
    label = f"host ({device.description})" if device.is_host else f"{device.name} (this machine)"
    cores = available_cores()
    threads = min(device.threads or cores, cores)
    note = f"{device.name} asks for {device.threads} threads; this machine has {cores}" if threads < (device.threads or 0) else ""
    records = []
    for batch in sorted(set(batch_sizes)):
        stats = ort.measure_latency(onnx_path, input_shape, batch, threads=threads, warmup=warmup, runs=runs)
        records.append(LatencyRecord(batch=batch, device=label, kind=LatencyKind.MEASURED, runtime="onnxruntime",
                                     ms=stats.median_ms, p90_ms=stats.p90_ms, p99_ms=stats.p99_ms, runs=stats.runs,
                                     threads=threads, note=note))
    return records


def can_stand_for(profile: TargetProfile) -> bool:
    """True where latency measured here is latency on ``profile``'s device."""
    try:
        check_can_stand_for(profile)
    except EdgekdError:
        return False
    return True


def check_can_stand_for(profile: TargetProfile) -> None:
    """Raise an :class:`EdgekdError` saying why this machine cannot be measured as ``profile``'s device."""
    if profile.is_host:
        return
    runtime = descriptor(profile.runtime)
    if runtime.measure is Measure.ENGINE:
        if not runtime.available():
            raise EdgekdError(f"{runtime.title} is not installed here, so {profile.name} cannot be measured on this "
                              f"machine; run `edgekd bench` on the {profile.name} itself ({runtime.install_hint})")
        return
    machine = platform.machine().lower()
    _, flags, _ = read_cpuinfo()
    wants_arm = bool(ARM_FLAGS & set(profile.isa))
    is_arm = machine in ("aarch64", "arm64")
    missing = [f for f in profile.isa if f not in ARM_FLAGS and f not in flags]
    if wants_arm != is_arm or (not is_arm and missing):
        why = f"it is {machine}" + (f" without {', '.join(missing)}" if missing and not is_arm else "")
        raise EdgekdError(f"this machine cannot stand for {profile.name} ({why}); run `edgekd bench` on the "
                          "device itself, or use --target host to measure this machine")
