"""The roofline estimator's arithmetic on graphs small enough to count by hand."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.estimate import estimate_latency, node_costs
from edgekd.targets import Calibration, TargetProfile

EXACT = Calibration(compute_efficiency=1.0, int8_compute_efficiency=1.0, memory_efficiency=1.0, node_overhead_us=0.0)


def target(bandwidth_gbs: float) -> TargetProfile:
    return TargetProfile(name="t", description="test", runtime="onnxruntime", precision="fp32",
                         quantization={"activations": "uint8-asymmetric"},
                         peak={"int8_tops": 4.0, "fp16_tflops": 1.0, "fp32_tflops": 1.0},
                         memory_bandwidth_gbs=bandwidth_gbs)


def conv_relu(int8: bool = False):
    """1×1×4×4 → Conv(2 filters, 3×3, pad 1) → Relu; with ``int8``, a Q/DQ pair before the conv."""
    weight = np.ones((2, 1, 3, 3), np.int8 if int8 else np.float32)
    inits = [numpy_helper.from_array(weight, "w")]
    nodes, source = [], "input"
    if int8:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z"),
                  numpy_helper.from_array(np.full(2, 0.1, np.float32), "ws"),
                  numpy_helper.from_array(np.zeros(2, np.int8), "wz")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
                  helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0)]
        source = "dq"
    nodes += [helper.make_node("Conv", [source, "wf" if int8 else "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["output"], name="relu")]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_flops_and_bytes_by_hand():
    conv, relu = node_costs(conv_relu(), batch=1)
    assert conv.flops == 2 * 32 * 9  # 32 outputs × 9 MACs × 2
    assert conv.bytes == 4 * (16 + 32) + 4 * 18  # input + output activations + weights, fp32
    assert (relu.flops, relu.bytes) == (32, 4 * (32 + 32))
    conv64, _ = node_costs(conv_relu(), batch=64)
    assert conv64.flops == 64 * conv.flops and conv64.bytes == 64 * 4 * 48 + 4 * 18  # weights are read once


def test_memory_bound_and_compute_bound_times():
    slow_memory = estimate_latency(conv_relu(), target(1.0), 1, EXACT)  # 1 GB/s: bytes dominate
    assert slow_memory.ms == pytest.approx((264 + 256) / 1e9 * 1e3)
    assert slow_memory.memory_bound_nodes == 2
    fast_memory = estimate_latency(conv_relu(), target(1e9), 1, EXACT)  # bandwidth is no limit: FLOPs dominate
    assert fast_memory.ms == pytest.approx((576 + 32) / 1e12 * 1e3)
    overhead = estimate_latency(conv_relu(), target(1e9), 1, EXACT.model_copy(update={"node_overhead_us": 5.0}))
    assert overhead.ms == pytest.approx(fast_memory.ms + 2 * 5e-3)


def test_int8_nodes_use_the_int8_peak_and_one_byte_per_value():
    conv, relu = node_costs(conv_relu(int8=True), batch=1)
    assert conv.int8 and not relu.int8  # Q/DQ nodes themselves are fused away
    assert conv.bytes == 16 + 32 + 18
    estimate = estimate_latency(conv_relu(int8=True), target(1e9), 1, EXACT)
    assert estimate.ms == pytest.approx((576 / 4e12 + 32 / 1e12) * 1e3)
    assert estimate.to_dict()["kind"] == "estimated"
