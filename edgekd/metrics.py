"""What "better" means for a model: a metric, by name (``METRICS``) or the user's own callable.

Every metric edgekd uses is **higher-is-better**: accuracy control, the stages' checks, the budget
search and the report compare with ``>``. The built-ins:

* ``top1``: the share of items (or pixels) whose arg-max over axis 1 of the output equals the target.
* ``miou``: mean intersection-over-union over classes, from the per-pixel arg-max over the class axis
  (axis 1) of an (N, C, H, W) output against (N, H, W) integer masks. A class absent from both the
  prediction and the target of the whole set is left out of the mean; target values outside
  ``[0, C)`` (e.g. 255, "ignore") are not scored.
* ``mse``: reported as **−MSE** (label "−MSE") so that higher is better, like every other metric.

A user metric is any callable ``metric(outputs_batches, targets_batches) -> float``: two lists, one
entry per batch, each output as the model returns it (a tensor, a tuple or a dict of tensors, on the
CPU, float32) and each target as the data gives it. Higher must be better; a callable whose
``higher_is_better`` attribute is False is negated (its label gets a leading "−"). Optional
attributes: ``name``/``label`` (what reports call it) and ``points_per_unit`` (how many of the
"points" a budget such as ``max_accuracy_drop`` counts in one unit of the metric: 100 for the
fraction-valued built-ins top1 and miou, else 1: the metric's own units).

A metric that raises, or returns something that is not a finite number, raises
:class:`~edgekd.errors.UserFunctionError` naming the callable and the batch.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from edgekd.errors import ConfigError, UnknownNameError, UserFunctionError


class Accumulator:
    """One pass of a metric over a dataset: ``add`` each batch, then ``value``."""

    def add(self, outputs: Any, targets: Any, index: int) -> None:
        raise NotImplementedError

    def value(self) -> float:
        raise NotImplementedError

    def items(self) -> torch.Tensor | None:
        """Each item's score, in the order added, where the metric is their mean (top-1: 1 or 0 per image,
        a segmenter's share of right pixels); None where it is not (mIoU pools counts over the whole pass). Two models' items on the
        same data give the paired standard error of their difference (:func:`paired_standard_error`)."""
        return None


@dataclass(frozen=True)
class Metric:
    """A named, higher-is-better metric. ``fraction``: its values are 0-1 shares (reports show percent)."""

    name: str
    label: str
    points_per_unit: float = 1.0
    fraction: bool = False

    def accumulator(self) -> Accumulator:
        raise NotImplementedError

    def points(self, difference: float) -> float:
        """A difference of two values in budget points (percentage points for fractions, rounded to 0.01)."""
        return round(self.points_per_unit * difference, 2 if self.fraction else 6)

    def format(self, value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return f"{value:.2%}" if self.fraction else f"{value:.4g}"

    def fingerprint(self) -> str:
        """What a run's results depend on of this metric (a resumed run with another is not the same run)."""
        return self.name

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "higher_is_better": True,
                "points_per_unit": self.points_per_unit, "fraction": self.fraction}


def paired_standard_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Standard error of mean(reference) - mean(other) over the same items: sd(reference_i - other_i) / sqrt(n).
    Two models that agree on most items differ by far less than either's own sampling error."""
    if reference.shape != other.shape or reference.numel() < 2:
        raise ValueError(f"paired items must match and number at least 2, got {tuple(reference.shape)} and "
                         f"{tuple(other.shape)}")
    return float((reference - other).std(unbiased=True) / math.sqrt(reference.numel()))


def single_tensor(outputs: Any, metric: str, index: int) -> torch.Tensor:
    if not isinstance(outputs, torch.Tensor):
        raise UserFunctionError(f"metric {metric} needs a model that returns one tensor, but batch {index}'s outputs "
                                f"are a {type(outputs).__name__}; pass your own metric callable (metric=...)")
    return outputs


class Top1Count(Accumulator):
    def __init__(self):
        self.correct = self.total = 0
        self.hits: list[torch.Tensor] = []

    def add(self, outputs, targets, index):
        logits = single_tensor(outputs, "top1", index)
        if logits.dim() < 2 or logits.shape[:1] + logits.shape[2:] != targets.shape:
            raise UserFunctionError(f"metric top1 needs (N, C, ...) scores and (N, ...) class targets; batch {index} has "
                                    f"outputs {tuple(logits.shape)} and targets {tuple(targets.shape)}: pass "
                                    "metric='miou', 'mse' or your own callable")
        hits = logits.argmax(1) == targets
        per_image = hits.flatten(1) if hits.dim() > 1 else hits[:, None]  # a segmenter's: its pixels
        self.hits.append(per_image.double().mean(1))
        self.correct += int(hits.sum())
        self.total += targets.numel()

    def value(self):
        return self.correct / max(self.total, 1)

    def items(self):
        return torch.cat(self.hits) if self.hits else torch.zeros(0, dtype=torch.float64)


class Top1(Metric):
    def accumulator(self):
        return Top1Count()


class Confusion(Accumulator):
    """Per-class intersection and union counts over every pixel seen."""

    def __init__(self):
        self.intersection = self.union = None

    def add(self, outputs, targets, index):
        logits = single_tensor(outputs, "miou", index)
        if logits.dim() < 3 or targets.shape != logits.shape[:1] + logits.shape[2:]:
            raise UserFunctionError(f"metric miou needs (N, C, H, W) outputs and (N, H, W) masks; batch {index} has "
                                    f"outputs {tuple(logits.shape)} and targets {tuple(targets.shape)}")
        classes = logits.shape[1]
        predicted, target = logits.argmax(1).flatten(), targets.flatten().long()
        scored = (target >= 0) & (target < classes)
        predicted, target = predicted[scored], target[scored]
        pred_count = torch.bincount(predicted, minlength=classes)
        true_count = torch.bincount(target, minlength=classes)
        hits = torch.bincount(target[predicted == target], minlength=classes)
        if self.intersection is None:
            self.intersection, self.union = torch.zeros(classes, dtype=torch.int64), torch.zeros(classes, dtype=torch.int64)
        self.intersection += hits
        self.union += pred_count + true_count - hits

    def value(self):
        if self.union is None:
            return 0.0
        present = self.union > 0
        return float((self.intersection[present].double() / self.union[present].double()).mean()) if present.any() \
            else 0.0


class MeanIoU(Metric):
    def accumulator(self):
        return Confusion()


class SquaredError(Accumulator):
    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, outputs, targets, index):
        predicted = single_tensor(outputs, "mse", index)
        if predicted.shape != targets.shape:
            raise UserFunctionError(f"metric mse compares outputs and targets of one shape; batch {index} has outputs "
                                    f"{tuple(predicted.shape)} and targets {tuple(targets.shape)}")
        self.total += float((predicted.double() - targets.double()).pow(2).sum())
        self.count += targets.numel()

    def value(self):
        return -self.total / max(self.count, 1)


class NegativeMSE(Metric):
    def accumulator(self):
        return SquaredError()


METRICS: dict[str, Metric] = {
    "top1": Top1("top1", "accuracy", points_per_unit=100.0, fraction=True),  # as reports have always called it
    "miou": MeanIoU("miou", "mIoU", points_per_unit=100.0, fraction=True),
    "mse": NegativeMSE("mse", "−MSE"),
}
"""Built-in metrics by name (all higher-is-better)."""

DEFAULT = "top1"


@dataclass(frozen=True)
class UserMetric(Metric):
    """The user's ``metric(outputs_batches, targets_batches) -> float`` (negated if not higher-is-better)."""

    function: Callable | None = field(default=None, compare=False)
    sign: float = 1.0

    def accumulator(self):
        return Collected(self)

    def fingerprint(self) -> str:
        return f"{callable_fingerprint(self.function)}|sign {self.sign:g}"

    def call(self, outputs: list, targets: list) -> Any:
        return self.function(outputs, targets)


class Collected(Accumulator):
    """Every batch kept, the user's callable run once at the end; on failure, the first failing batch is found."""

    def __init__(self, metric: UserMetric):
        self.metric, self.outputs, self.targets = metric, [], []

    def add(self, outputs, targets, index):
        self.outputs.append(outputs)
        self.targets.append(targets)

    def value(self):
        try:
            result = self.metric.call(self.outputs, self.targets)
        except Exception as exc:
            raise UserFunctionError(f"metric {self.metric.name} raised {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''} ({self.where()})") from exc
        number = as_number(result)
        if number is None:
            raise UserFunctionError(f"metric {self.metric.name} returned {describe_value(result)}, not a finite number "
                                    f"({self.where()}); return a float, higher is better")
        return self.metric.sign * number

    def where(self) -> str:
        """'on batch K of N': the first batch the metric fails on alone, else 'over all N batches'."""
        for index, (outputs, targets) in enumerate(zip(self.outputs, self.targets)):
            try:
                if as_number(self.metric.call([outputs], [targets])) is None:
                    return f"on batch {index} of {len(self.outputs)}"
            except Exception:
                return f"on batch {index} of {len(self.outputs)}"
        return f"over all {len(self.outputs)} batches together"


def as_number(value: Any) -> float | None:
    """``value`` as a finite float (a Python/NumPy number or a one-element tensor), else None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            import numpy as np

            if isinstance(value, np.ndarray) and value.size == 1:
                value = value.item()
            else:
                return None
        except ImportError:  # pragma: no cover
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def describe_value(value: Any) -> str:
    if isinstance(value, (float, int)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return repr(float(value))
    return f"a {type(value).__name__}"


def callable_name(function: Callable) -> str:
    return getattr(function, "name", None) or getattr(function, "__name__", None) or type(function).__name__


DECLARED = ("label", "fraction", "points_per_unit", "higher_is_better")  # what a user callable may declare


def callable_fingerprint(function: Callable) -> str:
    """The callable's name and a hash of its code and declared attributes, so that a run resumed with a changed
    metric or loss of the same name is not taken for the same run.

    The code is the source where Python finds it (files, notebook cells), else the bytecode and constants;
    a ``functools.partial`` adds its arguments; a callable object, its class's source.
    """
    parts = [repr([(k, getattr(function, k)) for k in DECLARED if hasattr(function, k)])]
    while isinstance(function, functools.partial):
        parts.append(repr((function.args, sorted(function.keywords.items()))))
        function = function.func
    code_of = function if inspect.isfunction(function) or inspect.ismethod(function) else type(function)
    try:
        parts.append(inspect.getsource(code_of))
    except (OSError, TypeError):
        code = getattr(code_of, "__code__", None)
        parts.append(repr((code.co_code, code.co_consts)) if code is not None else code_of.__qualname__)
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    return f"{callable_name(function)}:{digest}"


def resolve_metric(metric: str | Callable | Metric | None = None) -> Metric:
    """A :class:`Metric` from a built-in name, a user callable, a Metric, or None (``top1``)."""
    if metric is None:
        return METRICS[DEFAULT]
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise UnknownNameError("metric", metric, METRICS)
        return METRICS[metric]
    if not callable(metric):
        raise ConfigError(f"metric must be a name ({', '.join(METRICS)}) or a callable "
                          f"metric(outputs_batches, targets_batches) -> float, not {type(metric).__name__}")
    name = callable_name(metric)
    if float(getattr(metric, "points_per_unit", 1.0)) <= 0:
        raise ConfigError(f"metric {name}: points_per_unit must be above 0 (how many budget points one unit of the "
                          f"metric is), not {metric.points_per_unit}")
    higher = bool(getattr(metric, "higher_is_better", True))
    label = getattr(metric, "label", None) or name
    return UserMetric(name=name, label=label if higher else f"−{label}",
                      points_per_unit=float(getattr(metric, "points_per_unit", 1.0)),
                      fraction=bool(getattr(metric, "fraction", False)), function=metric, sign=1.0 if higher else -1.0)
