"""ONNX export: one place that turns a PyTorch model into the ONNX graph edgekd ships, and proves it equal.

``export_onnx`` (TorchScript exporter, dynamic batch, ``onnx.checker``, onnxsim) is what the export
and quantize stages, the side-by-side timer and QAT all use, so the graph that is calibrated, timed
and shipped is the same graph. ``check_parity`` compares it with PyTorch on real images through
ONNX Runtime. ``export_model`` is the whole job for a user calling it from a notebook.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from edgekd.atomic import atomic_path
from edgekd.errors import ExportError
from edgekd.judge import output_names

OPSET = 17
INPUT, OUTPUT = "input", "logits"


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], *, opset: int = OPSET, simplify: bool = True):
    """``model`` as an ``onnx.ModelProto``: dynamic batch axis, full ``onnx.checker``, then onnxsim.

    Args:
        model: the model to export (put in eval mode and contiguous memory format).
        input_shape: one input without the batch axis, e.g. ``(3, 224, 224)``.
        opset: ONNX opset (17 or later: LayerNormalization and TensorRT 8.6+ need it).
        simplify: run onnxsim (constant folding; BatchNorm is folded by the exporter in eval mode).
    """
    import onnx

    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, *input_shape)
    names = output_names(model, example)  # logits; output_0, output_1, ...; or a dict's keys (edgekd.judge)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), buffer, dynamo=False,
                              input_names=[INPUT], output_names=list(names), opset_version=opset,
                              dynamic_axes={INPUT: {0: "batch"}, **{name: {0: "batch"} for name in names}})
    except Exception as exc:  # the exporter raises many types for unsupported ops
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    onnx_model = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return simplify_onnx(onnx_model) if simplify else onnx_model


def simplify_onnx(onnx_model):
    """onnxsim: constant folding and redundant-node removal (dynamic batch kept)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(onnx_model)
    if not ok:
        raise ExportError("onnxsim could not verify the simplified model; export with simplify: false")
    return simplified


@dataclass(frozen=True)
class Parity:
    """PyTorch vs ONNX Runtime on the same images: largest output difference (over every output tensor), top-1
    agreement (of the first output's arg-max over axis 1: per image, or per pixel for a segmenter), and the
    ONNX model's score under the run's metric (``accuracy``; top-1 by default)."""

    max_abs_diff: float
    top1_agreement: float
    images: int
    accuracy: float

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement, "images": self.images}


@torch.inference_mode()
def check_parity(model: nn.Module, onnx_path: Path, loader: DataLoader, *, threads: int | None = None,
                 limit: int | None = None, metric=None) -> Parity:
    """Run ``loader``'s images through ``model`` and the ONNX file; compare every output, score ONNX Runtime's
    outputs with ``metric`` (:func:`edgekd.judge.judge`'s path); outputs of another structure are an error."""
    from edgekd.judge import flatten_outputs, onnx_batches
    from edgekd.metrics import resolve_metric

    model.eval()
    accumulator = resolve_metric(metric).accumulator()
    max_diff, agree, compared, seen = 0.0, 0, 0, 0
    for index, (ort_outputs, targets, images) in enumerate(onnx_batches(onnx_path, loader, threads=threads)):
        torch_names, torch_tensors = flatten_outputs(model(images))
        ort_names, ort_tensors = flatten_outputs(ort_outputs)
        check_same_structure(torch_names, torch_tensors, ort_names, ort_tensors, index)
        for mine, theirs in zip(torch_tensors, ort_tensors):
            max_diff = max(max_diff, float((mine.float() - theirs).abs().max()) if mine.numel() else 0.0)
        first, ort_first = torch_tensors[0], ort_tensors[0]
        if first.dim() >= 2 and first.is_floating_point():
            agree += int((first.argmax(1) == ort_first.argmax(1)).sum())
            compared += first.argmax(1).numel()
        accumulator.add(ort_outputs, targets, index)
        seen += len(images)
        if limit is not None and seen >= limit:
            break
    if seen == 0:
        raise ExportError("the validation loader gave no images to check the exported model with")
    return Parity(max_diff, agree / compared if compared else 1.0, seen, accumulator.value())


def check_same_structure(torch_names, torch_tensors, ort_names, ort_tensors, index: int) -> None:
    """PyTorch's and ONNX Runtime's outputs must have the same names and shapes (one clear line otherwise)."""
    from edgekd.errors import UserFunctionError

    torch_shapes = [tuple(t.shape) for t in torch_tensors]
    ort_shapes = [tuple(t.shape) for t in ort_tensors]
    if torch_names != ort_names or torch_shapes != ort_shapes:
        raise UserFunctionError(f"the model's outputs differ between PyTorch and ONNX on batch {index}: PyTorch "
                                f"{dict(zip(torch_names, torch_shapes))}, ONNX {dict(zip(ort_names, ort_shapes))}; "
                                "return the same tensors (a tensor, a tuple or a dict of tensors) for every input")


def export_model(model: nn.Module, path: str | Path, loader: DataLoader, *, opset: int = OPSET,
                 simplify: bool = True, max_abs_diff: float = 1e-4, min_top1_agreement: float = 0.999,
                 threads: int | None = None) -> Parity:
    """Export ``model`` to ``path``, written only if it matches PyTorch on ``loader``'s images.

    The input shape is taken from the loader's first batch. Returns the parity figures (with the
    ONNX model's accuracy on the loader); raises :class:`ExportError` and writes nothing otherwise.
    """
    import onnx

    images, *_ = next(iter(loader))
    onnx_model = export_onnx(model, tuple(images.shape[1:]), opset=opset, simplify=simplify)
    with atomic_path(Path(path)) as tmp:
        onnx.save(onnx_model, str(tmp))
        parity = check_parity(model, tmp, loader, threads=threads)
        check_float_parity(parity, max_abs_diff=max_abs_diff, min_top1_agreement=min_top1_agreement)
    return parity


def check_float_parity(parity: Parity, *, max_abs_diff: float, min_top1_agreement: float) -> None:
    """A float export must reproduce PyTorch's logits: refuse it otherwise, saying what differs."""
    if parity.max_abs_diff > max_abs_diff or parity.top1_agreement < min_top1_agreement:
        raise ExportError(
            f"exported ONNX does not match PyTorch: max |Δlogit| {parity.max_abs_diff:.3g} "
            f"(limit {max_abs_diff:g}), top-1 agreement {parity.top1_agreement:.4%} "
            f"(limit {min_top1_agreement:.1%}) on {parity.images} images; the model likely uses an "
            "op the exporter translates differently: try another opset, or export without simplify")
