"""The ``export`` stage: ONNX with a dynamic batch, checked, simplified, and proven equal to PyTorch.

Steps, in order: ``torch.onnx.export`` (TorchScript exporter, opset ≥ 17) → ``onnx.checker``
→ onnxsim → the target runtime's Q/DQ rules (:mod:`edgekd.quantize.compliance`) → parity on
real validation images with ONNX Runtime: the largest absolute logit difference and the top-1
agreement must meet the thresholds, or the stage fails and no ``model.onnx`` is handed over.
The same pass measures the ONNX model's accuracy. After a quantize stage, its int8 model is the
one checked and handed over; it must agree with the float model's top-1 on ``min_int8_agreement``
of the images.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np
import onnx
import torch
from pydantic import Field
from torch import nn

from edgekd import console
from edgekd.atomic import atomic_path
from edgekd.context import RunContext
from edgekd.deploy import write_bundle
from edgekd.errors import ExportError
from edgekd.quantize import compliance
from edgekd.runtime.trtexec import write_build_script
from edgekd.stages.base import Stage
from edgekd.targets import Runtime

INPUT, OUTPUT = "input", "logits"


class ExportStage(Stage):
    """Export the current model to ``model.onnx`` in the run folder, after a parity check."""

    stage: Literal["export"] = "export"
    opset: int = Field(17, ge=17)
    simplify: bool = True
    max_abs_diff: float = Field(1e-4, gt=0)
    min_top1_agreement: float = Field(0.999, gt=0, le=1)
    min_int8_agreement: float = Field(0.95, gt=0, le=1, description="int8 vs float top-1 agreement to accept")
    parity_images: int | None = Field(None, ge=1, description="validation images to compare; all when unset")

    def apply(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        quantized = ctx.quantized_onnx is not None
        if quantized:
            onnx_model = onnx.load(str(ctx.quantized_onnx))
        else:
            onnx_model = export_onnx(model, ctx.input_shape, opset=self.opset)
            if self.simplify:
                onnx_model = simplify(onnx_model)
        violations = compliance.check(onnx_model, ctx.target.runtime)
        if violations:  # before anything is written: a model the device would reject is never handed over
            raise ExportError(f"{ctx.target.name}'s runtime ({ctx.target.runtime.value}) would reject this model: "
                              f"{compliance.summarize(violations)}; quantize with a quantize stage for this target")
        path = ctx.out_dir / "model.onnx"
        with atomic_path(path) as tmp:
            onnx.save(onnx_model, str(tmp))
            parity = check_parity(model, tmp, ctx, limit=self.parity_images)
            if quantized:
                self.enforce_int8(parity)
            else:
                self.enforce(parity)
            if ctx.sparse_layers:  # refused before the rename: a violating model is never handed over
                ctx.details["sparsity_2_4"] = verify_two_four(tmp, ctx.sparse_layers)
        console.info(f"export: {path.name} ({'int8' if quantized else 'float'}) matches PyTorch (max |Δlogit| "
                     f"{parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.4%}); "
                     f"ONNX Runtime accuracy {parity['accuracy']:.4f}")
        ctx.onnx_path = path
        ctx.accuracy, ctx.accuracy_source = parity.pop("accuracy"), "onnxruntime"
        ctx.size_bytes = path.stat().st_size
        ctx.details.update(parity=parity, opset=self.opset, simplified=self.simplify,
                           precision="int8" if quantized else "float")
        script = None
        if ctx.target.runtime is Runtime.TENSORRT:
            script, command = write_build_script(ctx.out_dir, path, ctx.target, ctx.input_shape,
                                                 sparse=bool(ctx.sparse_layers) and ctx.target.sparsity_2_4)
            ctx.details["tensorrt"] = {"build_script": script.name, "command": command,
                                       "note": "TensorRT is not used here; build the engine on the device"}
            console.info(f"export: TensorRT engine to be built on the device with {script.name}")
        bundle = write_bundle(ctx.out_dir, path, ctx.target, ctx.data.info.preprocessing(), build_script=script)
        ctx.details["deploy"] = sorted(p.name for p in bundle.iterdir())
        console.info(f"export: {bundle.name}/ holds what to copy onto {ctx.target.name}: "
                     + ", ".join(ctx.details["deploy"]))
        return model

    def enforce_int8(self, parity: dict) -> None:
        """An int8 model differs from float by design; its predictions must still agree."""
        if parity["top1_agreement"] < self.min_int8_agreement:
            raise ExportError(f"the int8 model agrees with the float model on only {parity['top1_agreement']:.2%} "
                              f"of {parity['images']} images (limit {self.min_int8_agreement:.0%}); the quantize "
                              "stage's accuracy does not hold for the exported file")

    def restore(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        ctx.onnx_path = ctx.out_dir / "model.onnx"
        return model

    def enforce(self, parity: dict) -> None:
        if parity["max_abs_diff"] > self.max_abs_diff or parity["top1_agreement"] < self.min_top1_agreement:
            raise ExportError(
                f"exported ONNX does not match PyTorch: max |Δlogit| {parity['max_abs_diff']:.3g} "
                f"(limit {self.max_abs_diff:g}), top-1 agreement {parity['top1_agreement']:.4%} "
                f"(limit {self.min_top1_agreement:.1%}) on {parity['images']} images; the model likely uses an "
                "op the exporter translates differently: try another opset, or export without simplify")


def verify_two_four(onnx_path, sparse_layers: tuple[str, ...]) -> dict:
    """Check that the exported weights of the 2:4-pruned layers are still 2:4 (BN folding keeps zeros)."""
    from edgekd.prune.semistructured import onnx_two_four_weights

    sparse, dense = onnx_two_four_weights(onnx.load(str(onnx_path)))
    if len(sparse) < len(sparse_layers):
        raise ExportError(f"{len(sparse_layers)} layers were pruned to 2:4 but only {len(sparse)} exported weights "
                          f"are 2:4 (dense: {', '.join(dense[:5])}); an export step filled in the zeros")
    return {"layers": len(sparse_layers), "verified_weights": len(sparse)}


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], *, opset: int) -> onnx.ModelProto:
    """TorchScript-based export with a dynamic batch axis, then ``onnx.checker`` (full check)."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, *input_shape),), buffer, dynamo=False,
                              input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    except Exception as exc:  # the exporter raises many types for unsupported ops
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    onnx_model = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return onnx_model


def simplify(onnx_model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim: constant folding and redundant-node removal (dynamic batch kept)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(onnx_model)
    if not ok:
        raise ExportError("onnxsim could not verify the simplified model; export with simplify: false")
    return simplified


@torch.inference_mode()
def check_parity(model: nn.Module, onnx_path, ctx: RunContext, *, limit: int | None) -> dict:
    """Compare PyTorch and ONNX Runtime logits on validation images; also ONNX Runtime accuracy."""
    from edgekd.runtime.onnxruntime import create_session, run_logits

    model.eval()
    session = create_session(onnx_path, threads=ctx.host_threads)
    max_diff, agree, correct, seen = 0.0, 0, 0, 0
    for ort_logits, labels, images in run_logits(session, ctx.val_loader):
        torch_logits = model(images).numpy()
        max_diff = max(max_diff, float(np.abs(torch_logits - ort_logits).max()))
        agree += int((torch_logits.argmax(1) == ort_logits.argmax(1)).sum())
        correct += int((ort_logits.argmax(1) == labels).sum())
        seen += len(labels)
        if limit is not None and seen >= limit:
            break
    return {"max_abs_diff": max_diff, "top1_agreement": agree / seen, "images": seen, "accuracy": correct / seen}
