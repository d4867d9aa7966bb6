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

SCORING_IMAGES = 100  # the fewest training images accuracy control scores on, besides calibration

Quantize = Callable[[list[str]], onnx.ModelProto]  # ONNX nodes to keep float → int8 model
Score = Callable[[onnx.ModelProto], float]  # model → accuracy on the scoring images
Points = Callable[[float], float]  # a difference of two scores → budget points (the metric's own units)


def percentage_points(difference: float) -> float:
    """Top-1 and mIoU differences in percentage points."""
    return round(100 * difference, 2)


@dataclass(frozen=True)
class FloatLayer:
    """A layer accuracy control kept in float, and the measurement that put it there."""

    node: str
    layer: str
    regained: float  # the metric regained on the scoring images by keeping only this layer float
    regained_points: float  # the same in budget points (percentage points of top-1 or mIoU)

    def to_dict(self) -> dict:
        return {"node": self.node, "layer": self.layer, "regained_points": self.regained_points,
                "why": f"accuracy control: int8 here alone cost {self.regained_points:g} points on the "
                       "scoring images"}


@dataclass
class ControlResult:
    model: onnx.ModelProto
    accuracy: float  # on the scoring images
    float_layers: list[FloatLayer] = field(default_factory=list)
    ranking: dict[str, float] = field(default_factory=dict)  # node → accuracy regained alone


def keep_sensitive_layers_float(float_model: onnx.ModelProto, quantize: Quantize, score: Score, *,
                                reference: float, max_drop: float, points: Points = percentage_points) -> ControlResult:
    """The int8 model with the fewest most-sensitive layers in float whose drop is ≤ ``max_drop``.

    ``reference`` is the float model's score on the scoring images; drops are in the metric's units (fractions
    for top-1 and mIoU); ``points`` turns one into the budget points messages and reports show.
    """
    model = quantize([])
    accuracy = score(model)
    if reference - accuracy <= max_drop:
        return ControlResult(model, accuracy)
    console.info(f"quantize: int8 drops {points(reference - accuracy):g} points on the scoring images "
                 f"(budget {points(max_drop):g}); ranking layers by sensitivity")
    nodes = [n.name for n in compute_nodes(float_model)]
    ranking = {node: score(quantize([node])) - accuracy for node in nodes}
    kept: list[str] = []
    for node in sorted(nodes, key=lambda n: -ranking[n]):
        kept.append(node)
        model = quantize(kept)
        accuracy = score(model)
        console.info(f"quantize: {module_name(node)} kept float → drop {points(reference - accuracy):g} points")
        if reference - accuracy <= max_drop:
            layers = [FloatLayer(n, module_name(n), ranking[n], points(ranking[n])) for n in kept]
            return ControlResult(model, accuracy, layers, ranking)
    raise QuantizeError(f"int8 stays {points(reference - accuracy):g} points below float even with every "
                        f"conv/linear layer in float (budget {points(max_drop):g}): the activations themselves do "
                        "not fit 8 bits; try method: qat, or raise max_accuracy_drop")
