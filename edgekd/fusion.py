"""Which ONNX nodes a runtime runs as one kernel: the fusion pass the latency estimate costs.

A runtime does not launch one kernel per ONNX node. It first rewrites the graph, and the
estimate (:mod:`edgekd.estimate`) must cost what runs, not what was exported:

* **Q/DQ pairs** are never kernels of their own in a Q/DQ model that a runtime quantizes: the
  quantize is folded into the producer's output (it writes int8) and the dequantize into the
  consumer's input (it reads int8). :func:`plain_graph` removes them and remembers which tensors
  are int8 (TensorRT "Q/DQ fusion", ONNX Runtime's QDQ → QLinear* rewrite).
* **TensorRT** (Developer Guide, "Layer Fusion" and "Fusion Types"): a convolution or matrix
  multiply absorbs what follows it point-wise: bias, BatchNorm/scale, activation (ReLU, clip,
  sigmoid, SiLU = x·sigmoid(x), ...), one residual *Add* of another tensor (and the activation
  after it), the quantize of its output. Consecutive point-wise layers that follow no
  convolution fuse into one point-wise kernel. Concatenation costs nothing: producers write
  into the concatenated buffer ("concatenation elimination"), and so do views
  (reshape/flatten/squeeze). Pooling, resize and softmax are kernels of their own.
* **ONNX Runtime CPU** (graph optimizations, level "all"): Conv + activation → ``FusedConv``,
  and in float the NCHWc transformer's Conv + Add (+ ReLU). In int8 a residual Add stays a
  ``QLinearAdd`` of its own (a ReLU after it folds into its output quantization); other
  point-wise nodes are one kernel each.

Which of these a runtime does is data: the ``fusion`` section of its descriptor
(``edgekd/runtime/<name>.yaml``, :class:`~edgekd.runtime.descriptor.FusionRules`). Each :class:`Kernel` lists
its nodes; the first is the one that does the arithmetic (the anchor).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from edgekd.runtime.descriptor import Epilogue, FusionRules, Residual, descriptor
from edgekd.targets import Runtime

QDQ = ("QuantizeLinear", "DequantizeLinear")
ANCHORS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
VIEWS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "Transpose", "Concat",
         "Dropout")  # free on every runtime; a descriptor's ``fusion.free`` adds its own (TensorRT: Split, Slice)
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
               "PRelu", "Softplus", "Gelu")
POINTWISE = ACTIVATIONS + ("Add", "Sub", "Mul", "Div", "BatchNormalization", "Neg", "Abs", "Sqrt", "Exp", "Pow",
                           "Max", "Min", "Sum", "Erf")
# ONNX Runtime's FusedConv takes these activations (core/optimizer/conv_activation_fusion.cc).
ORT_CONV_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh")


@dataclass
class Kernel:
    """Nodes one runtime kernel executes; ``nodes[0]`` is the anchor (conv, matmul, pool, ...)."""

    nodes: list[onnx.NodeProto]
    runtime: Runtime
    outputs: list[str] = field(default_factory=list)  # tensors that leave the kernel

    @property
    def name(self) -> str:
        return self.nodes[0].name or self.nodes[0].op_type

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(n.op_type for n in self.nodes)


@dataclass
class PlainGraph:
    """The graph with Q/DQ nodes removed: tensor names resolved through them, int8 tensors remembered."""

    nodes: list[onnx.NodeProto]
    int8: set[str]  # tensors that travel as int8 (quantized by a Q, read through a DQ)
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    constants: set[str]


def plain_graph(model: onnx.ModelProto) -> PlainGraph:
    """Remove Q/DQ nodes (renaming their outputs to their inputs); record which tensors are int8."""
    alias: dict[str, str] = {}
    int8: set[str] = set()
    constants = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
    for node in model.graph.node:  # topological order: a Q/DQ input is already resolved
        if node.op_type in QDQ:
            source = alias.get(node.input[0], node.input[0])
            alias[node.output[0]] = source
            int8.add(source)
            if source in constants:
                constants.add(node.output[0])
    nodes = []
    for node in model.graph.node:
        if node.op_type in QDQ:
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(alias.get(name, name) for name in node.input)
        nodes.append(copy)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    return PlainGraph(nodes, int8, producer, consumers, constants)


def fuse(model: onnx.ModelProto, runtime: Runtime) -> tuple[list[Kernel], PlainGraph]:
    """The kernels ``runtime`` runs for ``model``, in graph order (views and Q/DQ are in none)."""
    graph = plain_graph(model)
    rules = descriptor(runtime).fusion
    free = VIEWS + rules.free
    taken: set[int] = set()
    kernels = []
    for node in graph.nodes:
        if id(node) in taken or node.op_type in free:
            continue
        if node.op_type in ANCHORS:
            members = absorb(node, graph, rules, taken)
        elif node.op_type in POINTWISE and rules.pointwise_chains:
            members = pointwise_chain(node, graph, taken, POINTWISE)
        elif node.op_type in ("Add", "Sum") and node.input[0] in graph.int8:  # ORT: QLinearAdd, ReLU folded
            members = pointwise_chain(node, graph, taken, ("Relu",))
        else:
            members = [node]
        taken.update(id(n) for n in members)
        kernels.append(Kernel(members, runtime, escaping(members, graph)))
    return kernels, graph


def absorb(anchor: onnx.NodeProto, graph: PlainGraph, rules: FusionRules, taken: set[int]) -> list[onnx.NodeProto]:
    """The anchor plus the point-wise epilogue the runtime fuses into it (the longest valid prefix)."""
    members = [anchor]
    best = list(members)
    residual_used = False
    while True:
        candidate = next_epilogue(members, graph, rules, taken, residual_used)
        if candidate is None:
            break
        node, uses_residual = candidate
        members.append(node)
        residual_used |= uses_residual
        if len(escaping(members, graph)) <= 1:  # a kernel writes one tensor: only such prefixes are valid
            best = list(members)
    return best


def next_epilogue(members: list[onnx.NodeProto], graph: PlainGraph, rules: FusionRules, taken: set[int],
                  residual_used: bool) -> tuple[onnx.NodeProto, bool] | None:
    """A consumer of the kernel's tensors that the runtime can fold into it, and whether it is the residual add."""
    inside = {out for n in members for out in n.output}
    ids = {id(n) for n in members}
    for tensor in [out for n in members for out in n.output]:
        for node in graph.consumers.get(tensor, []):
            if id(node) in ids or id(node) in taken:
                continue
            external = [i for i in node.input if i and i not in inside and i not in graph.constants]
            if not external:
                if allowed(node, rules, members):
                    return node, False
            elif (len(external) == 1 and node.op_type in ("Add", "Sum") and not residual_used
                  and residual_allowed(rules, members, graph)):
                return node, True
    return None


def allowed(node: onnx.NodeProto, rules: FusionRules, members: list[onnx.NodeProto]) -> bool:
    """Whether the runtime folds this point-wise node (all its inputs from the kernel or constants) into it."""
    if rules.epilogue is Epilogue.POINTWISE:
        return node.op_type in POINTWISE
    if members[0].op_type != "Conv" or any(m.op_type in ORT_CONV_ACTIVATIONS for m in members):
        return False  # FusedConv takes one activation, last
    # BatchNorm, bias and scale fold into the weights (the exporter has usually done it already)
    return node.op_type in ORT_CONV_ACTIVATIONS + ("Add", "Mul", "BatchNormalization")


def residual_allowed(rules: FusionRules, members: list[onnx.NodeProto], graph: PlainGraph) -> bool:
    """TensorRT fuses a residual Add into any conv; ONNX Runtime only into a float conv (NCHWc Conv+Add+Relu)."""
    if rules.residual is Residual.ANY:
        return True
    anchor = members[0]
    return (anchor.op_type == "Conv" and anchor.input[0] not in graph.int8
            and not any(m.op_type in ORT_CONV_ACTIVATIONS for m in members))


def pointwise_chain(start: onnx.NodeProto, graph: PlainGraph, taken: set[int],
                    ops: tuple[str, ...]) -> list[onnx.NodeProto]:
    """Point-wise fusion: ``start`` and the following ``ops`` nodes that read only it (and constants)."""
    members = [start]
    while True:
        inside = {out for n in members for out in n.output}
        ids = {id(n) for n in members}
        following = [c for t in members[-1].output for c in graph.consumers.get(t, [])
                     if id(c) not in ids and id(c) not in taken and c.op_type in ops
                     and all(i in inside or i in graph.constants or not i for i in c.input)]
        if not following:
            return members
        members.append(following[0])


def escaping(members: list[onnx.NodeProto], graph: PlainGraph) -> list[str]:
    """Tensors produced by ``members`` that something outside them reads (or that are graph outputs)."""
    ids = {id(n) for n in members}
    out = []
    for node in members:
        for tensor in node.output:
            readers = graph.consumers.get(tensor, [])
            if not readers or any(id(r) not in ids for r in readers):
                out.append(tensor)
    return out
