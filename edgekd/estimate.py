"""Latency estimates for targets that are not here: a roofline over the kernels the runtime runs.

First the graph is grouped into the kernels the target's runtime really launches
(:mod:`edgekd.fusion`: TensorRT folds BatchNorm, bias, activation, the residual add and the
Q/DQ pairs into the convolution; ONNX Runtime has its own, smaller, set of fusions). For every
kernel: its arithmetic (FLOPs) and the bytes it must move (the tensors it reads from outside,
its weights, the tensor it writes); its time is the larger of FLOPs / attainable compute and
bytes / attainable bandwidth (Williams et al. 2009, "Roofline"), plus a fixed overhead per
kernel and one per inference. A kernel runs in int8 where its input is int8 (Q/DQ), else in
the profile's float precision; depthwise and grouped convolutions have an efficiency of their
own (they run far below peak on every runtime).

Attainable figures are the profile's peaks times its ``estimate`` calibration, fitted on
published measurements of the device (``benchmarks/estimator_devices.py``) or of this host
(``benchmarks/estimator_host.py``), with the error on held-out measurements recorded beside it
and the range of models those measurements span; :func:`estimate_records` puts that error on
every record of a model inside the range, and "unvalidated for a model of this size" (naming
what is outside) on the others. Every figure this module produces is an *estimate*, and is
labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from edgekd.fusion import Kernel, PlainGraph, fuse
from edgekd.records import LatencyKind, LatencyRecord
from edgekd.runtime.descriptor import descriptor
from edgekd.targets import Calibration, Precision, TargetProfile, Validation


@dataclass(frozen=True)
class KernelCost:
    """One fused kernel: what it computes and moves, and in which precision."""

    name: str
    ops: tuple[str, ...]
    flops: float
    bytes: float
    int8: bool
    grouped: bool = False
    macs: float = 0.0  # multiply-accumulates of its conv / matmul (0 for the rest)
    params: int = 0  # weights and biases of its conv / matmul
    depthwise: bool = False  # a grouped conv with one input channel per group
    activations: tuple[float, ...] = ()  # bytes of each activation in ``bytes`` (read or written; not weights)

    def dram_bytes(self, on_chip_bytes: float) -> float:
        """``bytes`` less the activations small enough to stay in on-chip cache between kernels."""
        return self.bytes - sum(a for a in self.activations if a <= on_chip_bytes)


@dataclass(frozen=True)
class Estimate:
    """Estimated milliseconds per batch, and what bounded it."""

    batch: int
    ms: float
    compute_bound_kernels: int
    memory_bound_kernels: int
    kernels: int

    @property
    def compute_bound_nodes(self) -> int:  # the benchmark stage's wording until it calls estimate_records
        return self.compute_bound_kernels

    @property
    def memory_bound_nodes(self) -> int:
        return self.memory_bound_kernels

    def to_dict(self) -> dict:
        return {"batch": self.batch, "ms": round(self.ms, 4), "kind": "estimated", "kernels": self.kernels,
                "compute_bound_kernels": self.compute_bound_kernels,
                "memory_bound_kernels": self.memory_bound_kernels}


@dataclass(frozen=True)
class ModelSummary:
    """What a validated range is about: one image's MACs and parameters, conv kinds, precision."""

    macs: float
    params: int
    kernels: tuple[str, ...]  # dense, grouped, depthwise
    precision: str  # int8 where any conv/matmul runs in int8, else the runtime's float precision

    @classmethod
    def of(cls, costs: list[KernelCost], target: TargetProfile) -> "ModelSummary":
        kinds = {"depthwise" if c.depthwise else "grouped" if c.grouped else "dense" for c in costs if c.macs}
        return cls(sum(c.macs for c in costs), sum(c.params for c in costs), tuple(sorted(kinds)),
                   "int8" if any(c.int8 and c.macs for c in costs) else float_precision(target).value)


def outside_validated_range(summary: ModelSummary, batch: int, validation: Validation | None) -> str:
    """What of this model lies outside the range the profile's error was measured on ('' when inside).

    E.g. ``5.53 M MACs, validated 1.24 G-216 G; 70.1 K parameters, validated 6.81 M-78.2 M``. A profile with a
    validation but no recorded range counts every model as inside (the figures predate ranges).
    """
    if validation is None or validation.validated is None:
        return ""
    v, gaps = validation.validated, []
    if not v.macs[0] <= summary.macs <= v.macs[1]:
        gaps.append(f"{si(summary.macs)} MACs, validated {si(v.macs[0])}-{si(v.macs[1])}")
    if not v.params[0] <= summary.params <= v.params[1]:
        gaps.append(f"{si(summary.params)} parameters, validated {si(v.params[0])}-{si(v.params[1])}")
    if extra := [k for k in summary.kernels if k not in v.kernels]:
        gaps.append(f"{', '.join(extra)} convolutions, validated {', '.join(v.kernels)}")
    if summary.precision not in {p.value for p in v.precisions}:
        gaps.append(f"{summary.precision}, validated {', '.join(p.value for p in v.precisions)}")
    if not v.batch[0] <= batch <= v.batch[1]:
        gaps.append(f"batch {batch}, validated {v.batch[0]}-{v.batch[1]}")
    return "; ".join(gaps)


def si(value: float) -> str:
    """3 significant digits and an SI prefix: ``5.53 M``, ``216 G``, ``70.1 K``, ``12``."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g}"


def estimate_records(onnx_path: Path, target: TargetProfile) -> list[LatencyRecord]:
    """The target's latency per batch size: a labelled estimate with its validated error, or not-measured.

    What the benchmark stage reports for a target that is not this machine. An estimated record
    carries the profile's held-out error (``uncertainty_pct``, ``held_out_measurements``) when the
    model lies inside the range that error was measured on; outside it (a 70K-parameter student on
    a profile validated on 1-200 GMAC detectors) it carries no ± but ``outside_validated_range``,
    naming what is outside, and says "unvalidated for a model of this size". A profile no public
    measurement has checked says that instead.
    """
    how = f"run `edgekd bench model.onnx --target {target.name}` on the device, then `edgekd report RUN --merge`"
    if target.peak is None or target.memory_bandwidth_gbs is None:
        return [LatencyRecord(batch=batch, device=target.name, kind=LatencyKind.NOT_MEASURED,
                              runtime=target.runtime.value,
                              note=f"the profile has no peak numbers to estimate from; {how}")
                for batch in target.batch_sizes]
    model = onnx.load(str(onnx_path))
    validation = target.estimate.validation
    summary = ModelSummary.of(kernel_costs(model, target, 1), target)
    records = []
    for batch in target.batch_sizes:
        estimate = estimate_latency(model, target, batch)
        outside = outside_validated_range(summary, batch, validation)
        validated = validation is not None and not outside
        error = (f"unvalidated for a model of this size: the profile's {target.estimate.describe()} holds only "
                 "inside the range it was validated over"
                 if outside else target.estimate.describe())
        records.append(LatencyRecord(
            batch=batch, device=target.name, kind=LatencyKind.ESTIMATED, runtime=target.runtime.value,
            ms=estimate.ms,
            uncertainty_pct=round(100 * validation.median_abs_error, 1) if validated else None,
            held_out_measurements=validation.held_out if validated else 0,
            outside_validated_range=outside,
            note=f"roofline estimate of {Path(onnx_path).name} over the {estimate.kernels} kernels "
                 f"{target.runtime.value} runs ({estimate.compute_bound_kernels} compute-bound, "
                 f"{estimate.memory_bound_kernels} memory-bound); {error}; not a measurement: {how}"))
    return records


def estimate_latency(model: onnx.ModelProto, target: TargetProfile, batch: int,
                     calibration: Calibration | None = None, *, cuda_graph: bool = False) -> Estimate:
    """Roofline estimate of one inference of ``batch`` images on ``target`` (its own calibration by default).

    ``cuda_graph``: the engine is replayed as a CUDA graph (MLPerf's harness) instead of enqueued
    kernel by kernel (trtexec's default, ``infer.py``): then no kernel waits for its launch.
    """
    return roofline(kernel_costs(model, target, batch), target, batch, calibration or target.estimate,
                    cuda_graph=cuda_graph)


def kernel_costs(model: onnx.ModelProto, target: TargetProfile, batch: int) -> list[KernelCost]:
    """FLOPs and bytes of every kernel ``target``'s runtime runs for ``model`` at ``batch`` (shapes inferred)."""
    model = with_batch(model, batch)
    shapes = tensor_shapes(model)
    kernels, graph = fuse(model, target.runtime)
    float_bytes = float_element_bytes(target)
    weights = {t.name: t for t in model.graph.initializer}
    return [cost_of(kernel, graph, shapes, weights, float_bytes) for kernel in kernels]


def cost_of(kernel: Kernel, graph: PlainGraph, shapes: dict[str, tuple[int, ...]], weights: dict,
            float_bytes: int) -> KernelCost:
    """One kernel's FLOPs (all its nodes) and bytes (outside inputs, constants, escaping outputs)."""
    inside = {out for n in kernel.nodes for out in n.output}
    anchor = kernel.nodes[0]

    def element(tensor: str) -> int:
        return 1 if tensor in graph.int8 else float_bytes

    flops = sum(node_flops(n, [shapes.get(i, ()) for i in n.input if i], shapes.get(n.output[0], ()),
                           constant_shape(n, weights)) for n in kernel.nodes)
    moved, activations = 0.0, []
    read: set[str] = set()
    for node in kernel.nodes:
        for name in node.input:
            if not name or name in inside or name in read:
                continue
            read.add(name)
            if name in weights:  # a float weight quantized in the graph (QAT export) is read as int8
                per = 1 if name in graph.int8 else constant_bytes(weights[name], float_bytes)
                moved += size(shapes.get(name, ())) * per
            elif name not in graph.constants:
                activations.append(size(shapes.get(name, ())) * element(name))
    activations += [size(shapes.get(t, ())) * element(t) for t in kernel.outputs]
    moved += sum(activations)
    group = next((a.i for a in anchor.attribute if a.name == "group"), 1) if anchor.op_type == "Conv" else 1
    int8 = bool(anchor.input) and anchor.input[0] in graph.int8
    weight = constant_shape(anchor, weights)
    macs, params = 0.0, 0
    if weight and anchor.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        macs = node_flops(anchor, [shapes.get(i, ()) for i in anchor.input if i], shapes.get(anchor.output[0], ()),
                          weight) / 2
        params = sum(size(shapes.get(name, ())) for name in anchor.input[1:3] if name in weights)
    return KernelCost(kernel.name, kernel.ops, flops, moved, int8, grouped=group > 1, macs=macs, params=params,
                      depthwise=group > 1 and bool(weight) and weight[1] == 1, activations=tuple(activations))


def node_flops(node: onnx.NodeProto, ins: list[tuple], out: tuple, weight: tuple | None) -> float:
    """Floating-point (or integer) operations of one node: 2 per multiply-accumulate."""
    if node.op_type in ("Conv", "ConvTranspose") and weight:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        # each output (or, transposed, each input) element takes C_in/group × kernel MACs
        positions = size(out) if node.op_type == "Conv" else size(ins[0])
        per = (weight[1] if node.op_type == "Conv" else weight[0] // group) * int(np.prod(weight[2:]))
        return 2.0 * positions * per
    if node.op_type in ("Gemm", "MatMul") and ins:
        return 2.0 * size(out) * (ins[0][-1] if ins[0] else 0)
    if node.op_type in ("MaxPool", "AveragePool"):
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
        return float(size(out) * int(np.prod(kernel)))
    if node.op_type in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Softmax"):
        return float(size(ins[0])) if ins else 0.0
    return float(size(out))  # elementwise and the rest: one operation per output value


def roofline(costs: list[KernelCost], target: TargetProfile, batch: int, calibration: Calibration, *,
             cuda_graph: bool = False) -> Estimate:
    """Sum over kernels of max(compute time, memory time) + overhead, at the profile's attainable peaks.

    Without a CUDA graph the CPU enqueues each kernel (``launch_overhead_us``) while the GPU runs the
    ones before it, so a kernel takes at least its launch time. An activation of at most
    ``on_chip_bytes`` passes from kernel to kernel through the on-chip cache and costs no DRAM traffic.
    """
    if target.peak is None or target.memory_bandwidth_gbs is None:
        raise ValueError(f"target {target.name} has no peak numbers to estimate from")
    float_peak = float_peak_tflops(target) * 1e12
    int8_peak = target.peak.int8_tops * 1e12
    bandwidth = target.memory_bandwidth_gbs * 1e9 * calibration.memory_efficiency
    total, compute_bound, memory_bound = calibration.inference_overhead_us * 1e-6, 0, 0
    for cost in costs:
        if cost.int8:
            efficiency = (calibration.int8_grouped_efficiency if cost.grouped else None) \
                or calibration.int8_compute_efficiency
            attainable = int8_peak * efficiency
        else:
            efficiency = (calibration.grouped_efficiency if cost.grouped else None) or calibration.compute_efficiency
            attainable = float_peak * efficiency
        compute = cost.flops / attainable
        memory = cost.dram_bytes(calibration.on_chip_bytes) / bandwidth
        compute_bound += compute >= memory
        memory_bound += compute < memory
        kernel = max(compute, memory) + calibration.kernel_overhead_us * 1e-6
        total += kernel if cuda_graph else max(kernel, calibration.launch_overhead_us * 1e-6)
    return Estimate(batch, total * 1000, compute_bound, memory_bound, len(costs))


def float_precision(target: TargetProfile) -> Precision:
    """The precision float layers run at, from the runtime's descriptor (``estimate.float_precision``).

    TensorRT runs them in fp16 in an engine built for fp16 or int8; ONNX Runtime on a CPU in fp32 whatever
    the profile's precision.
    """
    return descriptor(target.runtime).estimate.float_layers(target.precision)


def float_peak_tflops(target: TargetProfile) -> float:
    """The peak float layers run at: the profile's fp16 or fp32 peak, as :func:`float_precision` says."""
    return target.peak.fp16_tflops if float_precision(target) is Precision.FP16 else target.peak.fp32_tflops


def float_element_bytes(target: TargetProfile) -> int:
    """Bytes per float value as the runtime stores activations: 2 where it runs fp16, else 4."""
    return 2 if float_precision(target) is Precision.FP16 else 4


def constant_bytes(tensor: onnx.TensorProto, float_bytes: int) -> int:
    """Bytes per value of a constant: int8 weights stay one byte; float ones take the runtime's float size."""
    if tensor.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
        return 1
    return float_bytes if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) else 4


def constant_shape(node: onnx.NodeProto, weights: dict) -> tuple | None:
    """The weight shape of a conv or matmul whose weight is a constant."""
    if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
        return None
    tensor = weights.get(node.input[1])
    return tuple(tensor.dims) if tensor is not None else None


def with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of ``model`` with its symbolic batch dimension fixed, so every shape can be inferred."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in list(model.graph.input) + list(model.graph.output):
        dims = tensor.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    del model.graph.value_info[:]
    return shape_inference.infer_shapes(model, data_prop=True)  # data_prop: sizes computed by Shape ops


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for info in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 0

