"""Quantization-aware training with distillation: NNCF fake-quantizers, KD from the float model.

When post-training quantization cannot meet the accuracy budget, the int8 model is fine-tuned
with its quantizers in the loop (NNCF's PyTorch backend: ``nncf.quantize`` inserts calibrated
fake-quantizers whose scales then train with the weights) and the float model as KD teacher
(:func:`edgekd.distill.recovery.recover`), as in NVIDIA ModelOpt's QAD. BatchNorm is folded
into the convolutions first, so the weights that are quantized during training are the
weights that are shipped. The result is exported as a Q/DQ ONNX model with int8 weights.
Calibration and fine-tuning run on the run's device (:mod:`edgekd.device`); the fake-quantized
model is returned where ``model`` was (the CPU, for the ONNX export).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from torch import nn
from torch.utils.data import DataLoader

from edgekd import device as devices
from edgekd.data import DataBundle
from edgekd.distill.recovery import RecoveryConfig, recover
from edgekd.factorize.decompose import set_module
from edgekd.onnx_export import OPSET, export_onnx
from edgekd.quantize.graph import GraphView
from edgekd.quantize.ptq import nncf_dataset, quiet_nncf
from edgekd.quantize.scheme import Scheme
from edgekd.train import TrainResult


def quantization_aware_training(model: nn.Module, data: DataBundle, calibration: DataLoader, *, scheme: Scheme,
                                config: RecoveryConfig = RecoveryConfig(), checkpoint: Path | None = None,
                                cache_dir: Path | None = None, progress: bool = True, metric=None,
                                loss=None) -> tuple[nn.Module, TrainResult | None]:
    """A fake-quantized copy of ``model`` (BatchNorm folded), fine-tuned on ``data`` with ``model`` as KD teacher.

    ``calibration`` initializes the quantizers' ranges; ``config`` is the KD fine-tuning (see
    :func:`edgekd.distill.recovery.recover`).
    """
    quiet_nncf()
    # NNCF compiles its fake-quantize C++ extension on first use and gives up after 60 s; on a busy
    # 2-core machine the compile alone can take longer (seen in this suite under load).
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    student = fold_batchnorm(copy.deepcopy(model).eval())
    quantized = calibrated_fake_quantizers(student, calibration, scheme).to(devices.home(model))
    if scheme.signed_activations:
        sign_fake_quantizers(quantized)
    result = recover(quantized, model, data, config, checkpoint=checkpoint, cache_dir=cache_dir, progress=progress,
                     metric=metric, loss=loss)
    return quantized.eval(), result


def calibrated_fake_quantizers(model: nn.Module, calibration: DataLoader, scheme: Scheme) -> nn.Module:
    """NNCF's fake-quantized copy of ``model``, its ranges calibrated on the run's device (and left there)."""
    import nncf

    device = devices.current()
    return nncf.quantize(model.to(device), nncf_dataset(calibration, device=device), preset=scheme.nncf_preset(),
                         subset_size=len(calibration))


def sign_fake_quantizers(model: nn.Module) -> int:
    """Make NNCF's unsigned symmetric quantizers signed (same scale: one bit less, as TensorRT runs them)."""
    from nncf.torch.quantization.layers import SymmetricQuantizer

    changed = 0
    for module in model.modules():
        if isinstance(module, SymmetricQuantizer) and not module.signed:
            module.signed = True
            changed += 1
    return changed


def export_qdq(model: nn.Module, input_shape: tuple[int, ...], *, opset: int = OPSET) -> onnx.ModelProto:
    """The fake-quantized model as standard Q/DQ ONNX, weights stored as int8 (as PTQ writes them)."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    for module in model.modules():
        if isinstance(module, BaseQuantizer):
            module.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    onnx_model = export_onnx(model, input_shape, opset=opset)
    fold_weight_quantizers(onnx_model)
    return onnx_model


def fold_weight_quantizers(model: onnx.ModelProto) -> int:
    """Replace ``QuantizeLinear(constant weight)`` by the int8 constant it computes, in place.

    The exporter writes float weights followed by Q then DQ; runtimes (and onnxsim) leave that
    Q in the graph, so every inference would quantize the weights again.
    """
    view = GraphView(model)
    folded = []
    for node in view.nodes:
        if node.op_type != "QuantizeLinear" or not all(name in view.constants for name in node.input[:3]):
            continue
        weight, scale, zero_point = (view.constants[name] for name in node.input[:3])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * weight.ndim
            shape[axis] = scale.size
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        info = np.iinfo(zero_point.dtype)
        values = np.clip(np.rint(weight / scale) + zero_point.astype(np.int32), info.min, info.max)
        model.graph.initializer.append(numpy_helper.from_array(values.astype(zero_point.dtype), node.output[0]))
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    return len(folded)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d into it (eval statistics), in place.

    Pairs are found with a torch.fx trace; a model fx cannot trace is returned as it is.
    """
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        graph = symbolic_trace(model).graph
    except Exception:  # fx cannot trace data-dependent control flow; QAT then runs with BatchNorm
        return model
    modules = dict(model.named_modules())
    for node in graph.nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if (isinstance(modules.get(node.target), nn.BatchNorm2d) and getattr(source, "op", None) == "call_module"
                and isinstance(modules.get(source.target), nn.Conv2d) and len(source.users) == 1):
            fused = fuse_conv_bn_eval(modules[source.target], modules[node.target])
            set_module(model, source.target, fused)
            set_module(model, node.target, nn.Identity())
    return model
