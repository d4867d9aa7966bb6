"""Target profiles: what a device is and how to build for it. Data in ``targets/*.yaml``.

``load_target('jetson-orin')`` (or a path to a YAML file) returns a validated
:class:`TargetProfile`; the ``host`` profile is completed by detecting this machine.
"""

from __future__ import annotations

import enum
import os
import platform
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgekd.builtin import builtin_dir, builtin_names, descriptor_dir
from edgekd.errors import UnknownNameError
from edgekd.yamlschema import load_yaml, validate


# One member per runtime descriptor (edgekd/runtime/<name>.yaml; see edgekd.runtime.descriptor), so adding a
# runtime needs no edit here: Runtime.TENSORRT, Runtime.ONNXRUNTIME, Runtime.OPENVINO, ...
Runtime = enum.Enum("Runtime", {path.stem.upper().replace("-", "_"): path.stem
                                for path in sorted(descriptor_dir().glob("*.yaml"))}, type=str, module=__name__)
Runtime.__doc__ = "The inference runtime a target profile names; what edgekd knows of each is its descriptor."


class Precision(str, enum.Enum):
    INT8 = "int8"
    FP16 = "fp16"
    FP32 = "fp32"


class ActivationScheme(str, enum.Enum):
    INT8_SYMMETRIC = "int8-symmetric"  # TensorRT: signed, zero-point 0
    UINT8_ASYMMETRIC = "uint8-asymmetric"  # ONNX Runtime CPU: unsigned after ReLU is fastest


class WeightScheme(str, enum.Enum):
    INT8_PER_CHANNEL_SYMMETRIC = "int8-per-channel-symmetric"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Strict):
    activations: ActivationScheme
    weights: WeightScheme = WeightScheme.INT8_PER_CHANNEL_SYMMETRIC


class Peak(_Strict):
    """Peak dense throughput of the compute the runtime uses (sources in the YAML comments)."""

    int8_tops: float = Field(gt=0)
    fp16_tflops: float = Field(gt=0)
    fp32_tflops: float = Field(gt=0)


class ValidatedRange(_Strict):
    """What the published measurements behind a profile's error span: an estimate outside it is unvalidated.

    ``macs`` and ``params`` are per image, [smallest, largest] over the measured models; ``kernels``
    the convolution kinds they contain (dense, grouped, depthwise); ``batch`` images per inference.
    """

    macs: tuple[float, float]
    params: tuple[int, int]
    kernels: tuple[str, ...] = Field(min_length=1)
    precisions: tuple[Precision, ...] = Field(min_length=1)
    batch: tuple[int, int]
    models: tuple[str, ...] = ()


class Validation(_Strict):
    """How far the estimate was off on public measurements it was not fitted on (``benchmarks/estimator_*.py``)."""

    held_out: int = Field(ge=1)  # measurements of this device predicted without being fitted on
    median_abs_error: float = Field(ge=0)  # median |estimate / published - 1| over them
    max_abs_error: float = Field(ge=0)
    fitted_on: int = Field(ge=0)  # measurements the calibration was fitted on (all devices of the runtime)
    sources: tuple[str, ...] = Field(min_length=1)  # document, table, software version, power mode
    benchmark: str  # the script that checks it, e.g. benchmarks/estimator_devices.py
    method: str = "held-out"  # how the held-out error was measured, e.g. leave-one-model-out
    validated: ValidatedRange | None = None  # None: no recorded range (every model counts as inside)

    def describe(self) -> str:
        return (f"±{self.median_abs_error:.0%} (median error on {self.held_out} held-out published "
                f"measurement{'s' if self.held_out != 1 else ''}, {self.benchmark})")


class Calibration(_Strict):
    """How close the runtime gets to the peaks, for latency estimates (:mod:`edgekd.estimate`).

    Efficiencies are fractions of the profile's peaks; overheads are per fused kernel (see
    :mod:`edgekd.fusion`) and per inference. The defaults are a first guess for devices nobody has
    measured; fitted values come with a ``validation`` that says how far off they were on
    measurements they were not fitted on. An efficiency can exceed 1 where the profile's peak is
    low (the host's is derived from the base clock, not turbo).
    """

    compute_efficiency: float = Field(0.25, gt=0, le=2)
    int8_compute_efficiency: float = Field(0.1, gt=0, le=2)
    grouped_efficiency: float | None = Field(None, gt=0, le=2)  # depthwise/grouped convs, float; None: as dense
    int8_grouped_efficiency: float | None = Field(None, gt=0, le=2)  # depthwise/grouped convs, int8
    memory_efficiency: float = Field(0.5, gt=0, le=1)
    kernel_overhead_us: float = Field(5.0, ge=0)
    inference_overhead_us: float = Field(0.0, ge=0)  # once per inference: launch, synchronization
    launch_overhead_us: float = Field(0.0, ge=0)  # per kernel enqueued without a CUDA graph (a kernel takes the longer)
    on_chip_bytes: float = Field(0.0, ge=0)  # activations this small stay in on-chip cache: no DRAM traffic
    validation: Validation | None = None

    def describe(self) -> str:
        """The estimate's uncertainty in words, for every report that uses it."""
        if self.validation is None:
            return "unvalidated: no public measurement of this device has checked this profile's estimate"
        return self.validation.describe()


class Software(_Strict):
    jetpack: str | None = None
    tensorrt: str | None = None


class TargetProfile(_Strict):
    """A hardware target: runtime, precision and quantization scheme, and its peak numbers."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    description: str
    runtime: Runtime
    precision: Precision
    quantization: Quantization
    sparsity_2_4: bool = False
    peak: Peak | None = None
    memory_bandwidth_gbs: float | None = Field(None, gt=0)
    threads: int | None = Field(None, ge=1)
    isa: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = Field((1, 8), min_length=1)
    channel_multiple: int = Field(8, ge=1)
    software: Software | None = None
    estimate: Calibration = Calibration()
    detected: bool = False

    @property
    def is_host(self) -> bool:
        """True for the profile of the machine edgekd runs on: latency here is measured."""
        return self.detected


def list_targets() -> list[str]:
    return builtin_names("targets")


def load_target(name_or_path: str) -> TargetProfile:
    """A shipped profile by name, or a profile YAML file by path (host fields detected)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.exists():
        if name_or_path not in list_targets():
            raise UnknownNameError("target", name_or_path, list_targets())
        path = builtin_dir("targets") / f"{name_or_path}.yaml"
    data, lines = load_yaml(path)
    if isinstance(data, dict) and "detect" in (data.get("description"), data.get("threads")):
        data = {**data, **detect_host(data)}
    return validate(TargetProfile, data, source=str(path), lines=lines)


def detect_host(data: dict) -> dict:
    """Describe this machine: CPU model, usable threads, ISA flags, and derived peak numbers."""
    model, flags, mhz = read_cpuinfo()
    threads = available_cores()
    isa = tuple(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_int8", "neon", "asimddp") if f in flags)
    fp32_per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 16 if "neon" in flags else 8
    int8_per_cycle = fp32_per_cycle * (4 if {"avx512_vnni", "asimddp"} & flags else 1.3)
    ghz = (mhz or 2000.0) / 1000
    detected = {
        "description": f"this machine: {model}, {threads} threads ({platform.machine()})",
        "threads": threads,
        "isa": list(isa),
        "detected": True,
    }
    if "peak" not in data:
        detected["peak"] = {"fp32_tflops": threads * ghz * fp32_per_cycle / 1000,
                            "fp16_tflops": threads * ghz * fp32_per_cycle / 1000,
                            "int8_tops": threads * ghz * int8_per_cycle / 1000}
    if "channel_multiple" not in data:  # ONNX Runtime's NCHWc conv kernels block channels by the vector width
        detected["channel_multiple"] = 16 if "avx512f" in flags else 8
    if "memory_bandwidth_gbs" not in data:
        detected["memory_bandwidth_gbs"] = 20.0 * threads
    return detected


def available_cores() -> int:
    """CPU cores this process may use (respects taskset and container limits on Linux)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def read_cpuinfo() -> tuple[str, set[str], float | None]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set(), None
    model = re.search(r"^(?:model name|Hardware)\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.MULTILINE)
    return (model.group(1).strip() if model else platform.machine(),
            set(flags.group(1).split()) if flags else set(),
            float(mhz.group(1)) if mhz else None)
