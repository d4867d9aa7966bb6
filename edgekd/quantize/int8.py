"""Post-training int8 quantization as one call: ``quantize_model(model, calibration, scheme=...)``.

The model is exported as the export stage ships it (BatchNorm folded, simplified), NNCF calibrates
that very graph on ``calibration``'s images in the target's scheme (TensorRT: signed, symmetric,
zero-point 0; CPU runtimes: asymmetric activations allowed), and, given ``scoring`` images and a
``max_accuracy_drop``, the most sensitive layers stay float until the drop on those images fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx
from torch import nn
from torch.utils.data import DataLoader

from edgekd.judge import judge
from edgekd.metrics import Metric, resolve_metric
from edgekd.onnx_export import export_onnx
from edgekd.quantize.accuracy import ControlResult, keep_sensitive_layers_float
from edgekd.quantize.ptq import BiasCorrection, quantize_onnx
from edgekd.quantize.scheme import Scheme


@dataclass(frozen=True)
class Int8Result:
    """The int8 Q/DQ model, the float graph it was calibrated from, what accuracy control kept float,
    and each fallback NNCF forced (a simpler bias correction, with the reason)."""

    model: onnx.ModelProto
    float_model: onnx.ModelProto
    control: ControlResult
    fallbacks: tuple[str, ...] = ()


def quantize_model(model: nn.Module | onnx.ModelProto, calibration: DataLoader, *, scheme: Scheme = Scheme.CPU,
                   bias_correction: BiasCorrection = BiasCorrection.FULL, scoring: DataLoader | None = None,
                   max_accuracy_drop: float | None = None, threads: int | None = None,
                   metric: str | Metric | Callable | None = None) -> Int8Result:
    """An int8 Q/DQ ONNX model of ``model`` (a PyTorch model, or its exported float ONNX graph).

    Args:
        calibration: training images (no labels needed) that set the activation ranges; 300–1000 is typical.
        scheme: the target runtime's Q/DQ scheme (:meth:`Scheme.for_target` picks it from a profile).
        bias_correction: NNCF's full (slower, more accurate), fast or no bias correction; falls back in that order.
        scoring: held-out *training* images with labels for accuracy control (never the validation set).
        max_accuracy_drop: metric points int8 may lose on ``scoring`` (percentage points of top-1 or mIoU, the
            metric's own units otherwise); with it, sensitive layers stay float.
        threads: ONNX Runtime threads for scoring.
        metric: what accuracy control scores (default top-1; :mod:`edgekd.metrics`).
    """
    metric = resolve_metric(metric)
    if isinstance(model, nn.Module):
        images, *_ = next(iter(calibration))
        float_model = export_onnx(model, tuple(images.shape[1:]))
    else:
        float_model = model

    fallbacks: dict[str, None] = {}  # in order, once each (accuracy control quantizes many times)

    def quantize(keep: list[str]) -> onnx.ModelProto:
        result = quantize_onnx(float_model, calibration, scheme, keep_float=keep, bias_correction=bias_correction)
        if result.fallback:
            fallbacks[result.fallback] = None
        return result.model

    if scoring is None or max_accuracy_drop is None:
        int8 = quantize([])
        return Int8Result(int8, float_model, ControlResult(int8, float("nan")), tuple(fallbacks))
    score = lambda m: onnx_accuracy(m, scoring, threads=threads, metric=metric)  # noqa: E731
    control = keep_sensitive_layers_float(float_model, quantize, score, reference=score(float_model),
                                          max_drop=max_accuracy_drop / metric.points_per_unit, points=metric.points)
    return Int8Result(control.model, float_model, control, tuple(fallbacks))


def onnx_accuracy(model: onnx.ModelProto, loader: DataLoader, *, threads: int | None = None,
                  metric: str | Metric | Callable | None = None) -> float:
    """``metric`` (default top-1) of an in-memory ONNX model on ``loader`` with ONNX Runtime."""
    return judge(model, loader, metric, threads=threads)
