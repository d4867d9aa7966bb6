"""The ``quantize`` stage: an int8 Q/DQ ONNX model in the target's scheme, within an accuracy budget.

Order of work:

1. The model is exported to ONNX (as the export stage does) and its ONNX Runtime accuracy measured.
2. Post-training quantization with NNCF, calibrated on ``calibration_images`` training images,
   in the target profile's scheme (:mod:`edgekd.quantize.scheme`).
3. Accuracy control: if int8 loses more than ``max_accuracy_drop`` points on held-out training
   images, the most sensitive layers stay float until it does not (:mod:`edgekd.quantize.accuracy`).
4. The budget is then checked on the selection split. ``method: auto`` falls back to QAT with
   KD from the float model when it still does not hold; ``method: qat`` goes there directly.
5. CPU targets: layers int8 makes slower on the target's runtime stay float (read off ONNX
   Runtime's optimized graph where this machine stands for the target, estimated otherwise;
   :mod:`edgekd.quantize.speed`), and a whole int8 model not ``min_speedup`` faster ships float.
6. The int8 model is checked against the target runtime's Q/DQ rules and timed against the float
   model on this machine, side by side. The export stage hands it over as ``model.onnx``.

The stage hands on the float PyTorch model (the reference the export stage compares with) and the
int8 file, with the settings that made it.
"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import onnx
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from edgekd import console
from edgekd.atomic import atomic_path, write_json
from edgekd.context import RunContext
from edgekd.data import make_loader
from edgekd.data.splits import seeded_parts
from edgekd.distill.recovery import RecoveryConfig
from edgekd.errors import QuantizeError
from edgekd.quantize import compliance
from edgekd.onnx_export import export_onnx
from edgekd.quantize.accuracy import SCORING_IMAGES
from edgekd.quantize.graph import float_layers, module_name, quantizers
from edgekd.quantize.int8 import quantize_model
from edgekd.quantize.ptq import BiasCorrection
from edgekd.quantize.qat import export_qdq, quantization_aware_training
from edgekd.quantize.scheme import Scheme
from edgekd.quantize.speed import float_where_slow
from edgekd.estimate import estimate_latency
from edgekd.runtime.compare import Comparison, HostComparer, slower_ones
from edgekd.runtime.host import can_stand_for
from edgekd.stages.base import Artifact, Handoff, ReportRow, Stage
from edgekd.train import Schedule, TrainConfig

INT8_FILE = "model.int8.onnx"
PRODUCED_FILE = "int8.json"  # the settings (and method) that produced the int8 file
UNPLACED = "NNCF placed no quantizer on its input (its placement rules, not accuracy control)"
QAT_DEFAULT = RecoveryConfig(train=TrainConfig(epochs=2, lr=0.001, schedule=Schedule.COSINE, augment=None))


class QuantizeStage(Stage):
    """int8 PTQ with accuracy control, or QAT with KD, in the target profile's Q/DQ scheme."""

    stage: Literal["quantize"] = "quantize"
    public_name: ClassVar[str | None] = "Quantize"
    method: Literal["auto", "ptq", "qat"] = Field(
        "auto", description="auto: PTQ with accuracy control, QAT+KD only if the budget still fails")
    calibration_images: int = Field(512, ge=32, description="training images that calibrate activation ranges")
    max_accuracy_drop: float = Field(1.0, ge=0, description="points of the run's metric int8 may lose vs float "
                                     "(percentage points of top-1 or mIoU; a user metric's own units)")
    bias_correction: BiasCorrection = Field(BiasCorrection.FULL, description="NNCF bias correction after PTQ: "
                                            "full, fast or none (each falls back to the next if NNCF fails)")
    accuracy_control: bool = Field(True, description="keep the most sensitive layers float to meet the budget")
    score_images: int = Field(2000, ge=100, description="held-out training images that score accuracy control")
    qat: RecoveryConfig = QAT_DEFAULT
    report_batches: tuple[int, ...] = (1, 64)
    min_speedup: float = Field(1.1, gt=0, description="CPU targets: int8 ships only if this much faster than float")
    require_int8: bool = Field(False, description="ship int8 even where it is not faster than float")

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        model = given.model.eval()
        scheme = Scheme.for_target(ctx.target)
        calibration, scoring = self.held_out_loaders(ctx)
        float_model = export_onnx(model, ctx.input_shape)
        float_accuracy = ctx.score(float_model)
        details: dict = {"scheme": scheme.value, "calibration_images": len(calibration.dataset),
                         "max_accuracy_drop_points": self.max_accuracy_drop, "accuracy_float": float_accuracy}
        int8, int8_accuracy, method, chosen = self.make_int8(model, float_model, float_accuracy, calibration,
                                                             scoring, scheme, ctx, row, details)
        if method.startswith("ptq") and scheme is not Scheme.TENSORRT and not self.require_int8:
            int8, slow = self.keep_slow_layers_float(float_model, int8, calibration, scheme, ctx, chosen)
            if slow:
                int8_accuracy = ctx.score(int8)
                chosen.update({s.to_dict()["layer"]: s.to_dict() for s in slow})
                details["float_for_speed"] = [s.to_dict() for s in slow]
                row.note("quantize", f"{len(slow)} layers stay float because int8 is slower there on "
                                     f"{ctx.target.name}: {slow[0].why}")
        self.check_compliance(int8, ctx)
        path = ctx.stage_dir / INT8_FILE
        with atomic_path(path) as tmp:
            onnx.save(int8, str(tmp))
        with HostComparer(float_model, ctx.input_shape, threads=ctx.host_threads) as timer:
            comparisons = timer.compare(path, self.report_batches)
        kept = [module_name(n) for n in float_layers(int8)]
        self.note_if_slower(comparisons, scheme, kept, row)
        console.info(f"quantize: {method}, {scheme.value} scheme: accuracy {float_accuracy:.4f} (float) → "
                     f"{int8_accuracy:.4f} (int8, ONNX Runtime); host speed-up "
                     + ", ".join(f"{c.speedup:.2f}× at batch {c.batch}" for c in comparisons)
                     + (f"; float layers: {', '.join(kept)}" if kept else ""))
        row.measured(int8_accuracy, "onnxruntime", size_bytes=path.stat().st_size)
        row.details.update(details, method=method, accuracy_int8=int8_accuracy,
                           drop_points=ctx.metric.points(float_accuracy - int8_accuracy), metric=ctx.metric.name,
                           host_latency=[c.to_dict() for c in comparisons],
                           float_layers=[chosen.get(name, {"layer": name, "why": UNPLACED}) for name in kept],
                           quantizers=len(quantizers(int8)))
        produced = {**self.settings(), "method_used": method, "scheme": scheme.value}
        not_faster = None if self.require_int8 else self.why_int8_does_not_pay(comparisons, float_model, int8, scheme,
                                                                                ctx)
        if not_faster:
            row.note("quantize", f"shipping the float model: {not_faster}; set require_int8: true to ship int8 anyway")
            row.measured(float_accuracy, "onnxruntime", size_bytes=len(float_model.SerializeToString()))
            row.details.update(shipped="float", why_float=not_faster)
            write_json(ctx.stage_dir / PRODUCED_FILE, {**produced, "shipped": "float"})
            return given
        row.details["shipped"] = "int8"
        write_json(ctx.stage_dir / PRODUCED_FILE, produced)
        return given.replace(int8=Artifact(path, ctx.stage_dir.name, produced))

    def keep_slow_layers_float(self, float_model: onnx.ModelProto, int8: onnx.ModelProto, calibration: DataLoader,
                               scheme: Scheme, ctx: RunContext, chosen: dict) -> tuple[onnx.ModelProto, list]:
        """Requantize with the layers int8 makes slower on the target kept float (see :mod:`edgekd.quantize.speed`)."""
        return float_where_slow(float_model, int8, calibration, scheme, ctx.target, batches=self.report_batches,
                                threads=ctx.host_threads, bias_correction=self.bias_correction,
                                keep=[layer["node"] for layer in chosen.values() if "node" in layer])

    def why_int8_does_not_pay(self, comparisons: list[Comparison], float_model: onnx.ModelProto,
                              int8: onnx.ModelProto, scheme: Scheme, ctx: RunContext) -> str | None:
        """Why a CPU target is better off in float (int8 not ``min_speedup`` faster at every batch), or None.

        Measured side by side where this machine stands for the target, else from the target's latency
        estimate. TensorRT artifacts are never judged here: host ONNX Runtime runs them dequantized.
        """
        if scheme is Scheme.TENSORRT:
            return None
        if can_stand_for(ctx.target):
            speedups = {c.batch: c.speedup for c in comparisons}
            how = "measured side by side on this machine"
        elif ctx.target.peak is not None and ctx.target.memory_bandwidth_gbs is not None:
            speedups = {b: estimate_latency(float_model, ctx.target, b).ms / estimate_latency(int8, ctx.target, b).ms
                        for b in ctx.target.batch_sizes}
            how = f"estimated for {ctx.target.name}"
        else:
            return None
        slow = {b: x for b, x in speedups.items() if x < self.min_speedup}
        if not slow:
            return None
        return (f"int8 is not at least {self.min_speedup:g}× faster than float on {ctx.target.name} ("
                + ", ".join(f"{x:.2f}× at batch {b}" for b, x in slow.items()) + f", {how})")

    def make_int8(self, model: nn.Module, float_model: onnx.ModelProto, float_accuracy: float,
                  calibration: DataLoader, scoring: DataLoader, scheme: Scheme, ctx: RunContext, row: ReportRow,
                  details: dict) -> tuple[onnx.ModelProto, float, str, dict]:
        """(int8 model, its selection-split accuracy, method used, layers accuracy control kept float), within budget."""
        if self.method in ("auto", "ptq"):
            ptq = quantize_model(float_model, calibration, scheme=scheme, bias_correction=self.bias_correction,
                                 scoring=scoring if self.accuracy_control else None,
                                 max_accuracy_drop=self.max_accuracy_drop, threads=ctx.host_threads,
                                 metric=ctx.metric)
            control = ptq.control
            for fallback in ptq.fallbacks:
                row.note("quantize", fallback)
            details["fallbacks"] = list(ptq.fallbacks)
            int8_accuracy = ctx.score(control.model)
            details["ptq"] = {"accuracy_int8": int8_accuracy,
                              "drop_points": ctx.metric.points(float_accuracy - int8_accuracy),
                              "accuracy_control_ranking": {module_name(n): ctx.metric.points(r)
                                                           for n, r in control.ranking.items()}}
            if not self.over_budget(float_accuracy, int8_accuracy, ctx):
                return (control.model, int8_accuracy, "ptq+accuracy-control" if control.float_layers else "ptq",
                        {layer.layer: layer.to_dict() for layer in control.float_layers})
            if self.method == "ptq":
                tried = "PTQ" + (" with accuracy control" if self.accuracy_control else "")
                raise QuantizeError(self.budget_message(tried, float_accuracy, int8_accuracy, ctx)
                                    + "; use method: auto or qat (QAT with KD)")
            row.note("quantize", f"PTQ lost {ctx.metric.points(float_accuracy - int8_accuracy):.2f} points on the selection "
                                 f"set (budget {self.max_accuracy_drop:g}); falling back to QAT with KD")
        int8, history = self.quantization_aware(model, calibration, scheme, ctx)
        int8_accuracy = ctx.score(int8)
        details["qat"] = {"accuracy_int8": int8_accuracy, "history": history}
        if self.over_budget(float_accuracy, int8_accuracy, ctx):
            raise QuantizeError(self.budget_message("QAT with KD", float_accuracy, int8_accuracy, ctx)
                                + "; give qat more epochs, or raise max_accuracy_drop")
        return int8, int8_accuracy, "qat+kd", {}

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        produced = json.loads((ctx.stage_dir / PRODUCED_FILE).read_text())
        if produced.get("shipped") == "float":
            return given
        return given.replace(int8=Artifact(ctx.stage_dir / INT8_FILE, ctx.stage_dir.name, produced))

    def held_out_loaders(self, ctx: RunContext) -> tuple[DataLoader, DataLoader]:
        """Calibration and scoring images: disjoint, shuffled, from the training set (never the selection or report split)."""
        train = ctx.data.train
        if len(train) < self.calibration_images + SCORING_IMAGES:
            raise QuantizeError(f"the training set has {len(train)} images; calibration_images is "
                                f"{self.calibration_images} and scoring needs {SCORING_IMAGES} more: "
                                "lower calibration_images")
        parts = seeded_parts(train, (self.calibration_images, self.score_images), seed=0)
        return tuple(make_loader(part, ctx.data.info, batch_size=32, train=False) for part in parts)

    def quantization_aware(self, model: nn.Module, calibration: DataLoader, scheme: Scheme,
                           ctx: RunContext) -> tuple[onnx.ModelProto, list]:
        fake_quantized, result = quantization_aware_training(model, ctx.data, calibration, scheme=scheme,
                                                             config=self.qat, checkpoint=ctx.stage_dir / "train-qat.pt",
                                                             cache_dir=ctx.cache_dir, progress=ctx.progress,
                                                             metric=ctx.metric, loss=ctx.loss)
        return export_qdq(fake_quantized, ctx.input_shape), result.history if result else []

    @staticmethod
    def note_if_slower(comparisons: list[Comparison], scheme: Scheme, kept: list[str], row: ReportRow) -> None:
        if not slower_ones(comparisons):
            return
        why = ("ONNX Runtime on x86 does not fuse signed-activation Q/DQ into its int8 kernels, so this TensorRT "
               "artifact runs dequantized here; the host figure says nothing about the device"
               if scheme is Scheme.TENSORRT else
               f"float layers between int8 ones ({', '.join(kept)}) add quantize/dequantize steps" if kept else
               "the layers may be too small for int8 kernels to pay off")
        row.note("quantize", f"the int8 model runs slower than float on this host ({slower_ones(comparisons)}): {why}")

    def check_compliance(self, int8: onnx.ModelProto, ctx: RunContext) -> None:
        violations = compliance.check(int8, ctx.target.runtime)
        if violations:
            raise QuantizeError(f"the int8 model breaks {ctx.target.runtime.value}'s Q/DQ rules: "
                                f"{compliance.summarize(violations)}")

    def over_budget(self, float_accuracy: float, int8_accuracy: float, ctx: RunContext) -> bool:
        return ctx.metric.points(float_accuracy - int8_accuracy) > self.max_accuracy_drop

    def budget_message(self, method: str, float_accuracy: float, int8_accuracy: float, ctx: RunContext) -> str:
        return (f"{method} loses {ctx.metric.points(float_accuracy - int8_accuracy):.2f} points of selection-split "
                f"{ctx.metric.label} ({float_accuracy:.4f} → {int8_accuracy:.4f}), over max_accuracy_drop "
                f"{self.max_accuracy_drop:g}")


