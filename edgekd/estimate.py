"""Latency estimates for targets that are not here: a per-node roofline over the ONNX graph.

For every node: its arithmetic (FLOPs) and the bytes it must move (inputs, weights, outputs);
its time is the larger of FLOPs / attainable compute and bytes / attainable bandwidth (Williams
et al. 2009, "Roofline"), plus a fixed per-node overhead (kernel launch, scheduling). The peaks
come from the target profile, for the precision each node runs in: int8 where a node's
activation input is dequantized int8 (Q/DQ), else the profile's float precision. Attainable
figures are the peaks times efficiencies (the profile's ``estimate`` calibration: fitted on
measurements for the host, ``benchmarks/estimator_host.py``; a first guess for other devices). Every figure this module produces is an *estimate*, and is labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import shape_inference

from edgekd.quantize.graph import GraphView
from edgekd.targets import Calibration, Precision, TargetProfile

FREE = {"QuantizeLinear", "DequantizeLinear", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Shape",
        "Constant", "Transpose", "Concat"}  # fused away or a view: only their overhead is left out too


@dataclass(frozen=True)
class NodeCost:
    name: str
    op: str
    flops: float
    bytes: float
    int8: bool


@dataclass(frozen=True)
class Estimate:
    """Estimated milliseconds per batch, and what bounded it."""

    batch: int
    ms: float
    compute_bound_nodes: int
    memory_bound_nodes: int
    nodes: int

    def to_dict(self) -> dict:
        return {"batch": self.batch, "ms": round(self.ms, 4), "kind": "estimated",
                "compute_bound_nodes": self.compute_bound_nodes, "memory_bound_nodes": self.memory_bound_nodes}


def node_costs(model: onnx.ModelProto, batch: int) -> list[NodeCost]:
    """FLOPs and bytes moved by every node of ``model`` at ``batch`` (shapes inferred)."""
    model = with_batch(model, batch)
    shapes = tensor_shapes(model)
    view = GraphView(model)
    costs = []
    for node in view.nodes:
        if node.op_type in FREE:
            continue
        int8 = is_int8(node, view)
        element = 1 if int8 else 4
        out = shapes.get(node.output[0], ())
        ins = [shapes.get(name, ()) for name in node.input if name]
        weight = view.weight_of(node) if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") else None
        flops = node_flops(node, ins, out, weight)
        moved = (size(ins[0]) if ins else 0) + size(out)
        weight_bytes = weight.size * (1 if weight.dtype in (np.int8, np.uint8) else 4) if weight is not None else 0
        costs.append(NodeCost(node.name or node.op_type, node.op_type, flops, moved * element + weight_bytes, int8))
    return costs


def node_flops(node: onnx.NodeProto, ins: list[tuple], out: tuple, weight: np.ndarray | None) -> float:
    """Floating-point (or integer) operations of one node: 2 per multiply-accumulate."""
    if node.op_type in ("Conv", "ConvTranspose") and weight is not None:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        # each output (or, transposed, each input) element takes C_in/group × kernel MACs
        positions = size(out) if node.op_type == "Conv" else size(ins[0])
        per = (weight.shape[1] if node.op_type == "Conv" else weight.shape[0] // group) * int(np.prod(weight.shape[2:]))
        return 2.0 * positions * per
    if node.op_type in ("Gemm", "MatMul") and ins:
        return 2.0 * size(out) * (ins[0][-1] if ins[0] else 0)
    if node.op_type in ("MaxPool", "AveragePool"):
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
        return float(size(out) * int(np.prod(kernel)))
    if node.op_type in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Softmax"):
        return float(size(ins[0])) if ins else 0.0
    return float(size(out))  # elementwise and the rest: one operation per output value


def estimate_latency(model: onnx.ModelProto, target: TargetProfile, batch: int,
                     calibration: Calibration | None = None) -> Estimate:
    """Roofline estimate of one inference of ``batch`` images on ``target`` (its own calibration by default)."""
    return roofline(node_costs(model, batch), target, batch, calibration or target.estimate)


def roofline(costs: list[NodeCost], target: TargetProfile, batch: int, calibration: Calibration) -> Estimate:
    """Sum over nodes of max(compute time, memory time) + overhead, at the profile's attainable peaks."""
    if target.peak is None or target.memory_bandwidth_gbs is None:
        raise ValueError(f"target {target.name} has no peak numbers to estimate from")
    float_peak = {Precision.FP16: target.peak.fp16_tflops, Precision.INT8: target.peak.fp16_tflops}.get(
        target.precision, target.peak.fp32_tflops) * 1e12
    int8_peak = target.peak.int8_tops * 1e12
    bandwidth = target.memory_bandwidth_gbs * 1e9 * calibration.memory_efficiency
    total, compute_bound, memory_bound = 0.0, 0, 0
    for cost in costs:
        attainable = (int8_peak * calibration.int8_compute_efficiency if cost.int8
                      else float_peak * calibration.compute_efficiency)
        compute = cost.flops / attainable
        memory = cost.bytes / bandwidth
        compute_bound += compute >= memory
        memory_bound += compute < memory
        total += max(compute, memory) + calibration.node_overhead_us * 1e-6
    return Estimate(batch, total * 1000, compute_bound, memory_bound, len(costs))


def is_int8(node: onnx.NodeProto, view: GraphView) -> bool:
    """A node whose first input comes from a DequantizeLinear runs in int8 (the runtime fuses the pair)."""
    producer = view.producer.get(node.input[0]) if node.input else None
    return producer is not None and producer.op_type == "DequantizeLinear"


def with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of ``model`` with its symbolic batch dimension fixed, so every shape can be inferred."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in list(model.graph.input) + list(model.graph.output):
        dims = tensor.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    del model.graph.value_info[:]
    return shape_inference.infer_shapes(model)


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
