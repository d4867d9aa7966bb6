"""The int8 scheme a target needs, and turning NNCF's output into it.

The scheme comes from the target profile's ``quantization`` field, which must be one its runtime runs
(the ``quantization`` section of the runtime's descriptor, ``edgekd/runtime/<name>.yaml``):

* ``int8-symmetric`` activations (TensorRT): signed int8, zero-point 0 everywhere.
* ``uint8-asymmetric`` activations (ONNX Runtime on CPU): NNCF's *mixed* preset, asymmetric
  activations (unsigned after ReLU), which ONNX Runtime's u8×s8 kernels run fastest.

Weights are signed, symmetric and per output channel in both.

NNCF has no switch for signed activations (its hardware configs leave the sign to the data,
and forcing it is rejected as incompatible), so after a symmetric quantization
:func:`sign_activations` re-encodes every unsigned zero-point-0 quantizer as signed int8 with the
same upper bound: the scale grows by 255/127 and the values keep their meaning. This is the
precision TensorRT itself gives such a tensor (one bit less after a ReLU); the accuracy of the
re-encoded model is what edgekd measures and reports.
"""

from __future__ import annotations

import enum

import numpy as np
import onnx
from onnx import numpy_helper

from edgekd.runtime.descriptor import descriptor
from edgekd.targets import ActivationScheme, TargetProfile

UINT8_TO_INT8_SCALE = 255.0 / 127.0


class Scheme(str, enum.Enum):
    """How activations are quantized; named after the runtime family that needs it."""

    TENSORRT = "tensorrt"  # signed int8, symmetric, zero-point 0
    CPU = "cpu"  # unsigned/asymmetric activations allowed

    @classmethod
    def for_target(cls, target: TargetProfile) -> "Scheme":
        """The scheme ``target`` asks for; a :class:`~edgekd.errors.ConfigError` if its runtime does not run it."""
        descriptor(target.runtime).check_target(target)
        symmetric = target.quantization.activations is ActivationScheme.INT8_SYMMETRIC
        return cls.TENSORRT if symmetric else cls.CPU

    @property
    def signed_activations(self) -> bool:
        return self is Scheme.TENSORRT

    def nncf_preset(self):
        """NNCF's preset: *performance* = symmetric activations, *mixed* = asymmetric activations."""
        from nncf import QuantizationPreset

        return QuantizationPreset.PERFORMANCE if self is Scheme.TENSORRT else QuantizationPreset.MIXED


def sign_activations(model: onnx.ModelProto) -> int:
    """Re-encode uint8 zero-point-0 Q/DQ nodes as int8 with the same range, in place; returns how many.

    Asymmetric uint8 quantizers (non-zero zero-point) have no signed equivalent and are left for
    the compliance checker to report.
    """
    initializers = {t.name: t for t in model.graph.initializer}
    changed: set[str] = set()  # zero points and scales already re-encoded (a Q and its DQ share them)
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale_name, zp_name = node.input[1], node.input[2]
        if zp_name in changed and node.op_type == "QuantizeLinear":
            set_type(model, node.output[0], onnx.TensorProto.INT8)
        if {zp_name, scale_name} & changed or zp_name not in initializers or scale_name not in initializers:
            continue
        zero_point = numpy_helper.to_array(initializers[zp_name])
        if zero_point.dtype != np.uint8 or np.any(zero_point != 0):
            continue
        scale = numpy_helper.to_array(initializers[scale_name])
        initializers[scale_name].CopyFrom(numpy_helper.from_array((scale * UINT8_TO_INT8_SCALE).astype(scale.dtype),
                                                                  scale_name))
        initializers[zp_name].CopyFrom(numpy_helper.from_array(np.zeros_like(zero_point, dtype=np.int8), zp_name))
        changed |= {zp_name, scale_name}
        set_type(model, zp_name, onnx.TensorProto.INT8)
        if node.op_type == "QuantizeLinear":
            set_type(model, node.output[0], onnx.TensorProto.INT8)
    return len(changed) // 2


def set_type(model: onnx.ModelProto, tensor: str, elem_type: int) -> None:
    """Correct the recorded element type of ``tensor`` (shape inference wrote the old one)."""
    for info in model.graph.value_info:
        if info.name == tensor:
            info.type.tensor_type.elem_type = elem_type
