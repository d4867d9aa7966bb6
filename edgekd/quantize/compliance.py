"""Does a Q/DQ model meet its runtime's rules? Each violation names the node that breaks one.

A quantized model that the device runtime rejects (or silently runs in float) is the most
common int8 deployment failure, so the export stage runs :func:`check` for its target and
refuses to hand over a violating artifact. Rules per runtime are data: the ``compliance`` section of
the runtime's descriptor (``edgekd/runtime/<name>.yaml``, :mod:`edgekd.runtime.descriptor`):

* TensorRT (explicit quantization, TensorRT 8.0+ Q/DQ rules): signed int8 only, zero-point 0,
  scales that are build-time constants, per-channel scales only on weights and only on their
  output-channel axis, and the Q/DQ format (not ONNX Runtime's QLinearConv-style operators).
* ONNX Runtime CPU: 8-bit Q/DQ with constant scales; unsigned and asymmetric activations are
  its fast path on x86 and ARM, and QOperator nodes are its own format.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgekd.quantize.graph import GraphView, quantizers
from edgekd.runtime.descriptor import descriptor
from edgekd.targets import Runtime

# ONNX Runtime's "QOperator" format: integer ops in place of Q/DQ around float ops.
QOPERATOR_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm",
                           "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool",
                           "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "DynamicQuantizeLinear"})

# Which weight axis is the output channel, per consumer op: TensorRT scales per output channel only.
OUTPUT_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}


@dataclass(frozen=True)
class Violation:
    node: str
    rule: str

    def __str__(self) -> str:
        return f"{self.node}: {self.rule}"


def check(model: onnx.ModelProto, runtime: Runtime) -> list[Violation]:
    """Every node of ``model`` that ``runtime`` would reject as int8 (empty: compliant)."""
    described = descriptor(runtime)
    rules, name = described.compliance, described.name
    found: list[Violation] = []
    if not rules.qoperator_ops:
        found += [Violation(n.name or n.output[0], f"{n.op_type} is ONNX Runtime's QOperator format; {name} takes "
                            "QuantizeLinear/DequantizeLinear pairs around float ops")
                  for n in model.graph.node if n.op_type in QOPERATOR_OPS]
    for q in quantizers(model):
        if q.dtype not in rules.dtypes:
            found.append(Violation(q.node, f"{q.dtype} {q.op} ({name} accepts {', '.join(sorted(rules.dtypes))})"))
        if rules.zero_point_zero and q.zero_point_nonzero:
            found.append(Violation(q.node, f"non-zero zero-point ({name} quantization is symmetric)"))
        if not q.constant_scale:
            found.append(Violation(q.node, "scale is computed in the graph; it must be a constant"))
        if q.per_axis and not q.on_weight and not rules.per_axis_on_activations:
            found.append(Violation(q.node, f"per-channel scale on an activation ({name} takes per-tensor "
                                   "activation scales)"))
    if rules.per_axis_output_channel_only:
        found += wrong_weight_axes(model, name)
    return found


def wrong_weight_axes(model: onnx.ModelProto, name: str) -> list[Violation]:
    """Per-channel weight quantizers whose axis is not the consuming layer's output channels."""
    view = GraphView(model)
    found = []
    for node in view.nodes:
        if node.op_type != "DequantizeLinear" or not view.is_weight(node.input[0]):
            continue
        scale = view.constants.get(node.input[1])
        if scale is None or scale.size <= 1:
            continue
        rank = len(view.constants[node.input[0]].shape) if node.input[0] in view.constants else len(scale.shape)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % max(rank, 1)  # ONNX allows axis=-r..r-1
        for consumer in view.consumers.get(node.output[0], []):
            expected = OUTPUT_CHANNEL_AXIS.get(consumer.op_type)
            if consumer.op_type == "Gemm":
                expected = 0 if next((a.i for a in consumer.attribute if a.name == "transB"), 0) else 1
            if expected is not None and axis != expected:
                found.append(Violation(node.name or node.output[0],
                                       f"per-channel axis {axis} for {consumer.op_type} weights; {name} needs "
                                       f"the output-channel axis {expected}"))
    return found


def summarize(violations: list[Violation], limit: int = 8) -> str:
    """One line for an error message: the first ``limit`` violations and how many more."""
    shown = "; ".join(str(v) for v in violations[:limit])
    more = f"; and {len(violations) - limit} more" if len(violations) > limit else ""
    return shown + more
