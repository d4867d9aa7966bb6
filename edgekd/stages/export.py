"""The ``export`` stage: ONNX with a dynamic batch, checked, simplified, and proven equal to PyTorch.

Steps, in order: ``torch.onnx.export`` (TorchScript exporter, opset ≥ 17) → ``onnx.checker``
→ onnxsim → the target runtime's Q/DQ rules (:mod:`edgekd.quantize.compliance`) → parity on
real selection-split images with ONNX Runtime: the largest absolute logit difference and the top-1
agreement must meet the thresholds, or the stage fails and no ``model.onnx`` is handed over.
The same pass measures the ONNX model's accuracy. After a quantize stage, its int8 model is the
one checked and handed over; it must agree with the float model's top-1 on ``min_int8_agreement``
of the images.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import onnx
from pydantic import Field

from edgekd import console
from edgekd.atomic import atomic_path
from edgekd.context import RunContext
from edgekd.deploy import write_bundle
from edgekd.errors import ExportError
from edgekd.onnx_export import OPSET, Parity, check_float_parity, check_parity, export_onnx
from edgekd.quantize import compliance
from edgekd.runtime.descriptor import descriptor
from edgekd.runtime.trtexec import BUILD_SCRIPT, write_build_script
from edgekd.stages.base import Artifact, Handoff, ReportRow, Stage

MODEL_FILE = "model.onnx"


class ExportStage(Stage):
    """Export the current model to ``model.onnx`` in the run folder, after a parity check."""

    stage: Literal["export"] = "export"
    public_name: ClassVar[str | None] = "Export"
    makes: ClassVar[tuple[str, ...]] = ("onnx",)
    opset: int = Field(OPSET, ge=17)
    simplify: bool = True
    max_abs_diff: float = Field(1e-4, gt=0)
    min_top1_agreement: float = Field(0.999, gt=0, le=1)
    min_int8_agreement: float = Field(0.95, gt=0, le=1, description="int8 vs float top-1 agreement to accept")
    parity_images: int | None = Field(None, ge=1, description="selection-split images to compare; all when unset")

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        model, quantized = given.model, given.int8 is not None
        if quantized:
            onnx_model, produced = onnx.load(str(given.int8.path)), given.int8.produced_by()
        else:
            onnx_model = export_onnx(model, ctx.input_shape, opset=self.opset, simplify=self.simplify)
            produced = {"file": MODEL_FILE, "stage": ctx.stage_dir.name,
                        "settings": {"opset": self.opset, "simplify": self.simplify}}
        violations = compliance.check(onnx_model, ctx.target.runtime)
        if violations:  # before anything is written: a model the device would reject is never handed over
            raise ExportError(f"{ctx.target.name}'s runtime ({ctx.target.runtime.value}) would reject this model: "
                              f"{compliance.summarize(violations)}; quantize with a quantize stage for this target")
        path = ctx.out_dir / MODEL_FILE
        with atomic_path(path) as tmp:
            onnx.save(onnx_model, str(tmp))
            parity = check_parity(model, tmp, ctx.selection_loader, threads=ctx.host_threads, limit=self.parity_images,
                                  metric=ctx.metric)
            if quantized:
                self.enforce_int8(parity)
            else:
                check_float_parity(parity, max_abs_diff=self.max_abs_diff, min_top1_agreement=self.min_top1_agreement)
            if given.sparse_layers:  # refused before the rename: a violating model is never handed over
                row.details["sparsity_2_4"] = verify_two_four(tmp, given.sparse_layers)
        console.info(f"export: {path.name} ({'int8' if quantized else 'float'}) matches PyTorch (max |Δlogit| "
                     f"{parity.max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.4%}); "
                     f"ONNX Runtime {ctx.metric.name} {parity.accuracy:.4f}")
        row.measured(parity.accuracy, "onnxruntime", size_bytes=path.stat().st_size)
        row.details.update(parity=parity.to_dict(), precision="int8" if quantized else "float", produced_by=produced)
        self.write_deploy(path, given, ctx, row)
        return given.replace(onnx=Artifact(path, produced["stage"], produced["settings"]))

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        produced = (given.int8.produced_by() if given.int8 is not None else
                    {"stage": ctx.stage_dir.name, "settings": {"opset": self.opset, "simplify": self.simplify}})
        return given.replace(onnx=Artifact(ctx.out_dir / MODEL_FILE, produced["stage"], produced["settings"]))

    def write_deploy(self, path, given: Handoff, ctx: RunContext, row: ReportRow) -> None:
        """``deploy/``: the model, how to feed it, an inference script, the TensorRT build script."""
        script = None
        if BUILD_SCRIPT in descriptor(ctx.target.runtime).deploy.files:
            script, command = write_build_script(ctx.out_dir, path, ctx.target, ctx.input_shape,
                                                 sparse=bool(given.sparse_layers) and ctx.target.sparsity_2_4)
            row.details["tensorrt"] = {"build_script": script.name, "command": command,
                                       "note": "TensorRT is not used here; build the engine on the device"}
            console.info(f"export: TensorRT engine to be built on the device with {script.name}")
        bundle = write_bundle(ctx.out_dir, path, ctx.target, ctx.data.info.preprocessing(), build_script=script)
        row.details["deploy"] = sorted(p.name for p in bundle.iterdir())
        console.info(f"export: {bundle.name}/ holds what to copy onto {ctx.target.name}: "
                     + ", ".join(row.details["deploy"]))

    def enforce_int8(self, parity: Parity) -> None:
        """An int8 model differs from float by design; its predictions must still agree."""
        if parity.top1_agreement < self.min_int8_agreement:
            raise ExportError(f"the int8 model agrees with the float model on only {parity.top1_agreement:.2%} "
                              f"of {parity.images} images (limit {self.min_int8_agreement:.0%}); the quantize "
                              "stage's accuracy does not hold for the exported file")


def verify_two_four(onnx_path, sparse_layers: tuple[str, ...]) -> dict:
    """Check that the exported weights of the 2:4-pruned layers are still 2:4 (BN folding keeps zeros)."""
    from edgekd.prune.semistructured import onnx_two_four_weights

    sparse, dense = onnx_two_four_weights(onnx.load(str(onnx_path)))
    if len(sparse) < len(sparse_layers):
        raise ExportError(f"{len(sparse_layers)} layers were pruned to 2:4 but only {len(sparse)} exported weights "
                          f"are 2:4 (dense: {', '.join(dense[:5])}); an export step filled in the zeros")
    return {"layers": len(sparse_layers), "verified_weights": len(sparse)}
