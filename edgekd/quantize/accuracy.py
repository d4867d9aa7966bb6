"""Accuracy control: keep the layers int8 hurts most in float until the drop is within budget.

The same idea as NNCF's ``quantize_with_accuracy_control`` (rank quantized layers by how much
accuracy reverting each one regains, then revert in that order until the budget holds), done
here on the model as it is shipped: NNCF's search would score the unsigned model before the
TensorRT re-encoding of :mod:`edgekd.quantize.scheme`. Every score is a measurement on held-out
training images, so the report can say per layer why it stayed float.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import onnx

from edgekd import console
from edgekd.errors import QuantizeError
from edgekd.quantize.graph import compute_nodes, module_name

Quantize = Callable[[list[str]], onnx.ModelProto]  # ONNX nodes to keep float → int8 model
Score = Callable[[onnx.ModelProto], float]  # model → accuracy on the scoring images


@dataclass(frozen=True)
class FloatLayer:
    """A layer accuracy control kept in float, and the measurement that put it there."""

    node: str
    layer: str
    regained: float  # accuracy (fraction) regained on the scoring images by keeping only this layer float

    def to_dict(self) -> dict:
        return {"node": self.node, "layer": self.layer, "regained_points": round(100 * self.regained, 2),
                "why": f"accuracy control: int8 here alone cost {100 * self.regained:.2f} points on the "
                       "scoring images"}


@dataclass
class ControlResult:
    model: onnx.ModelProto
    accuracy: float  # on the scoring images
    float_layers: list[FloatLayer] = field(default_factory=list)
    ranking: dict[str, float] = field(default_factory=dict)  # node → accuracy regained alone


def keep_sensitive_layers_float(float_model: onnx.ModelProto, quantize: Quantize, score: Score, *,
                                reference: float, max_drop: float) -> ControlResult:
    """The int8 model with the fewest most-sensitive layers in float whose drop is ≤ ``max_drop``.

    ``reference`` is the float model's accuracy on the scoring images; drops are fractions.
    """
    model = quantize([])
    accuracy = score(model)
    if reference - accuracy <= max_drop:
        return ControlResult(model, accuracy)
    console.info(f"quantize: int8 drops {100 * (reference - accuracy):.2f} points on the scoring images "
                 f"(budget {100 * max_drop:.2f}); ranking layers by sensitivity")
    nodes = [n.name for n in compute_nodes(float_model)]
    ranking = {node: score(quantize([node])) - accuracy for node in nodes}
    kept: list[str] = []
    for node in sorted(nodes, key=lambda n: -ranking[n]):
        kept.append(node)
        model = quantize(kept)
        accuracy = score(model)
        console.info(f"quantize: {module_name(node)} kept float → drop {100 * (reference - accuracy):.2f} points")
        if reference - accuracy <= max_drop:
            layers = [FloatLayer(n, module_name(n), ranking[n]) for n in kept]
            return ControlResult(model, accuracy, layers, ranking)
    raise QuantizeError(f"int8 stays {100 * (reference - accuracy):.2f} points below float even with every "
                        f"conv/linear layer in float (budget {100 * max_drop:.2f}): the activations themselves do "
                        "not fit 8 bits; try method: qat, or raise max_accuracy_drop")
