"""Reading a Q/DQ ONNX graph: its quantizers, what they feed, and which layers stayed float.

A Q/DQ model keeps float ops and marks where values are int8: a ``QuantizeLinear`` /
``DequantizeLinear`` pair on an activation, a ``DequantizeLinear`` (or a pair) on a weight.
Everything here reads graphs; nothing rewrites them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the layers int8 makes faster
# Ops that move int8 values without changing them: a DQ before them still feeds the next layer int8.
PASS_THROUGH_OPS = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice",
                    "Split", "Gather", "Pad", "Resize")


@dataclass(frozen=True)
class Quantizer:
    """One Q or DQ node as a runtime sees it."""

    node: str
    op: str
    dtype: str  # of the zero point, i.e. the int type; ONNX's default without one is uint8
    zero_point_nonzero: bool
    per_axis: bool
    axis: int
    on_weight: bool  # quantizes a constant (a layer's weights), not an activation
    constant_scale: bool
    consumers: tuple[str, ...]  # op types reading this node's output


class GraphView:
    """Lookups over one ONNX graph: constants by name, producers and consumers of each tensor."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes = list(model.graph.node)
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def is_weight(self, tensor: str) -> bool:
        """A constant, possibly through a QuantizeLinear (QAT exports quantize float weights in the graph)."""
        if tensor in self.constants:
            return True
        node = self.producer.get(tensor)
        return node is not None and node.op_type == "QuantizeLinear" and node.input[0] in self.constants

    def weight_of(self, node: onnx.NodeProto) -> np.ndarray | None:
        """A compute node's weight constant (the int8 values when it is quantized; zeros stay zeros)."""
        if len(node.input) < 2:
            return None
        name = node.input[1]
        producer = self.producer.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear":
            source = self.producer.get(producer.input[0])
            name = source.input[0] if source is not None and source.op_type == "QuantizeLinear" else producer.input[0]
        return self.constants.get(name)


def quantizers(model: onnx.ModelProto) -> list[Quantizer]:
    """Every Q and DQ node of ``model`` with the properties runtimes have rules about."""
    view = GraphView(model)
    found = []
    for node in view.nodes:
        if node.op_type not in QDQ_OPS:
            continue
        scale = view.constants.get(node.input[1])
        zero_point = view.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        found.append(Quantizer(
            node=node.name or node.output[0], op=node.op_type,
            dtype=str(zero_point.dtype) if zero_point is not None else "uint8",
            zero_point_nonzero=bool(zero_point is not None and np.any(zero_point != 0)),
            per_axis=scale is not None and scale.size > 1, axis=axis,
            on_weight=view.is_weight(node.input[0]), constant_scale=scale is not None,
            consumers=tuple(c.op_type for c in view.consumers.get(node.output[0], []))))
    return found


def compute_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv, ConvTranspose, Gemm and MatMul nodes that have a constant weight: the layers to quantize."""
    view = GraphView(model)
    return [n for n in view.nodes if n.op_type in COMPUTE_OPS and view.weight_of(n) is not None]


def float_layers(model: onnx.ModelProto) -> list[str]:
    """Compute nodes whose activation input is not dequantized int8: they run in float."""
    view = GraphView(model)
    kept = []
    for node in view.nodes:
        if node.op_type not in COMPUTE_OPS or view.weight_of(node) is None:
            continue
        producer = view.producer.get(node.input[0])
        while producer is not None and producer.op_type in PASS_THROUGH_OPS:
            producer = view.producer.get(producer.input[0])
        if producer is None or producer.op_type != "DequantizeLinear":
            kept.append(node.name)
    return kept


def module_name(node_name: str) -> str:
    """The PyTorch module an exported node came from: ``/block2/block2.3/Conv`` → ``block2.3``."""
    parts = node_name.strip("/").split("/")
    return parts[-2] if len(parts) >= 2 else node_name
