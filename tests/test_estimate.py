"""The latency estimator: runtime fusion counted by hand, roofline arithmetic, validated uncertainty."""

import json
import re
import statistics
import sys
from pathlib import Path

import onnx

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.builtin import builtin_dir
from edgekd.estimate import (ModelSummary, estimate_latency, estimate_records, kernel_costs,
                             outside_validated_range)
from edgekd.fusion import fuse
from edgekd.models import create_model
from edgekd.records import LatencyKind, describe_uncertainty
from edgekd.report.schema import Latency
from edgekd.targets import Calibration, Runtime, TargetProfile, list_targets, load_target

EXACT = Calibration(compute_efficiency=1.0, int8_compute_efficiency=1.0, memory_efficiency=1.0,
                    kernel_overhead_us=0.0)
RESULTS = Path(__file__).parent.parent / "benchmarks" / "results" / "estimator_devices.json"
sys.path.insert(0, str(RESULTS.parent.parent))
from estimator_fit import DEVICES, GRID, VARIANTS, Fitter, choice_at  # noqa: E402


def target(bandwidth_gbs: float, runtime: str = "onnxruntime") -> TargetProfile:
    return TargetProfile(name="t", description="test", runtime=runtime, precision="fp32",
                         quantization={"activations": "uint8-asymmetric"},
                         peak={"int8_tops": 4.0, "fp16_tflops": 1.0, "fp32_tflops": 1.0},
                         memory_bandwidth_gbs=bandwidth_gbs)


def graph(nodes, inits, channels: int = 1, size: int = 4):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                     ["batch", channels, size, size])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def qdq(tensor: str, out: str, nodes: list, inits: list) -> str:
    """A Q/DQ pair on ``tensor`` (signed int8, zero-point 0), as edgekd's TensorRT scheme writes them."""
    if "s" not in {i.name for i in inits}:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes += [helper.make_node("QuantizeLinear", [tensor, "s", "z"], [f"{out}_q"]),
              helper.make_node("DequantizeLinear", [f"{out}_q", "s", "z"], [out])]
    return out


def conv_relu(int8: bool = False):
    """1×1×4×4 → Conv(2 filters, 3×3, pad 1) → Relu; with ``int8``, a Q/DQ pair before the conv."""
    weight = np.ones((2, 1, 3, 3), np.int8 if int8 else np.float32)
    inits = [numpy_helper.from_array(weight, "w")]
    nodes, source, w = [], "input", "w"
    if int8:
        source = qdq("input", "dq", nodes, inits)
        inits += [numpy_helper.from_array(np.full(2, 0.1, np.float32), "ws"),
                  numpy_helper.from_array(np.zeros(2, np.int8), "wz")]
        nodes.append(helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0))
        w = "wf"
    nodes += [helper.make_node("Conv", [source, w], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["output"], name="relu")]
    return graph(nodes, inits)


def residual_block(int8: bool):
    """x → Conv-BN-ReLU → Conv-BN → Add(x) → ReLU (a ResNet basic block, 2 channels, 4×4), Q/DQ as NNCF places them."""
    c = 2
    w = numpy_helper.from_array(np.ones((c, c, 3, 3), np.float32), "w")
    bn = [numpy_helper.from_array(np.ones(c, np.float32), n) for n in ("g", "b", "m", "v")]
    nodes, inits = [], [w, *bn]
    x = qdq("input", "x_dq", nodes, inits) if int8 else "input"
    nodes += [helper.make_node("Conv", [x, "w"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"], name="bn1"),
              helper.make_node("Relu", ["n1"], ["r1"], name="relu1")]
    r1 = qdq("r1", "r1_dq", nodes, inits) if int8 else "r1"
    nodes += [helper.make_node("Conv", [r1, "w"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c2", "g", "b", "m", "v"], ["n2"], name="bn2")]
    left = qdq("n2", "n2_dq", nodes, inits) if int8 else "n2"
    right = qdq("input", "skip_dq", nodes, inits) if int8 else "input"
    nodes += [helper.make_node("Add", [left, right], ["sum"], name="add"),
              helper.make_node("Relu", ["sum"], ["output"], name="relu2")]
    return graph(nodes, inits, channels=c)


def silu_conv_pool():
    """Conv → Sigmoid, Mul(conv, sigmoid) (SiLU, a diamond) → MaxPool → Concat with itself → Relu."""
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sigmoid"),
             helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
             helper.make_node("MaxPool", ["y"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Concat", ["p", "p"], ["cat"], name="concat", axis=1),
             helper.make_node("Relu", ["cat"], ["output"], name="relu")]
    return graph(nodes, inits)


def test_tensorrt_runs_a_conv_bn_relu_add_block_as_two_kernels():
    for int8 in (False, True):
        kernels, _ = fuse(residual_block(int8), Runtime.TENSORRT)
        assert [k.ops for k in kernels] == [("Conv", "BatchNormalization", "Relu"),
                                            ("Conv", "BatchNormalization", "Add", "Relu")]  # Q/DQ in none


def test_onnxruntime_fuses_conv_activation_and_float_conv_add_relu_only():
    float_kernels, _ = fuse(residual_block(int8=False), Runtime.ONNXRUNTIME)
    assert [k.ops for k in float_kernels] == [("Conv", "BatchNormalization", "Relu"),
                                              ("Conv", "BatchNormalization", "Add", "Relu")]  # NCHWc Conv+Add+Relu
    int8_kernels, _ = fuse(residual_block(int8=True), Runtime.ONNXRUNTIME)
    assert [k.ops for k in int8_kernels] == [("Conv", "BatchNormalization", "Relu"), ("Conv", "BatchNormalization"),
                                             ("Add", "Relu")]  # QLinearAdd is a kernel of its own


def test_silu_diamond_fuses_concat_is_free_pool_is_its_own_kernel():
    trt, _ = fuse(silu_conv_pool(), Runtime.TENSORRT)
    assert [k.ops for k in trt] == [("Conv", "Sigmoid", "Mul"), ("MaxPool",), ("Relu",)]
    ort, _ = fuse(silu_conv_pool(), Runtime.ONNXRUNTIME)
    # ONNX Runtime has no Conv+SiLU: the conv output also feeds the Mul, so nothing fuses
    assert [k.ops for k in ort] == [("Conv",), ("Sigmoid",), ("Mul",), ("MaxPool",), ("Relu",)]


def test_fused_kernel_moves_only_what_enters_and_leaves_it():
    costs = kernel_costs(residual_block(int8=False), target(1.0), batch=1)
    block, act = 2 * 4 * 4, 2 * 2 * 9  # activations of the block; conv weights
    assert costs[0].bytes == 4 * (block + act + 4 * 2 + block)  # input, weights, 4 BN vectors, output
    assert costs[1].bytes == 4 * (block + act + 4 * 2 + block + block)  # + the shortcut read by the add
    int8 = kernel_costs(residual_block(int8=True), target(1.0, runtime="tensorrt"), batch=1)
    # int8 input and shortcut, fp32 weights, BN vectors and output (the graph output is not quantized)
    assert int8[1].int8 and int8[1].bytes == block + 4 * act + 4 * 4 * 2 + block + 4 * block


def test_flops_and_bytes_by_hand():
    conv = kernel_costs(conv_relu(), target(1.0), batch=1)
    assert len(conv) == 1 and conv[0].ops == ("Conv", "Relu")
    assert conv[0].flops == 2 * 32 * 9 + 32  # 32 outputs × 9 MACs × 2, plus the fused ReLU's 32
    assert conv[0].bytes == 4 * (16 + 32) + 4 * 18  # input + output activations + weights: the ReLU moves nothing
    conv64 = kernel_costs(conv_relu(), target(1.0), batch=64)[0]
    assert conv64.flops == 64 * conv[0].flops and conv64.bytes == 64 * 4 * 48 + 4 * 18  # weights are read once


def test_memory_bound_and_compute_bound_times():
    slow_memory = estimate_latency(conv_relu(), target(1.0), 1, EXACT)  # 1 GB/s: bytes dominate
    assert slow_memory.ms == pytest.approx(264 / 1e9 * 1e3)
    assert slow_memory.memory_bound_kernels == 1 and slow_memory.kernels == 1
    fast_memory = estimate_latency(conv_relu(), target(1e9), 1, EXACT)  # bandwidth is no limit: FLOPs dominate
    assert fast_memory.ms == pytest.approx(608 / 1e12 * 1e3)
    overhead = estimate_latency(conv_relu(), target(1e9), 1,
                                EXACT.model_copy(update={"kernel_overhead_us": 5.0, "inference_overhead_us": 7.0}))
    assert overhead.ms == pytest.approx(fast_memory.ms + 5e-3 + 7e-3)


def test_activations_that_fit_on_chip_cost_no_dram_traffic_and_weights_always_do():
    (conv,) = kernel_costs(conv_relu(), target(1.0), batch=1)
    assert conv.activations == (4 * 16, 4 * 32)  # the input read and the output written; weights are not among them
    assert conv.dram_bytes(0) == conv.bytes == 264 and conv.dram_bytes(4 * 16) == 264 - 64
    assert conv.dram_bytes(1e6) == 4 * 18  # only the weights come from DRAM
    on_chip = estimate_latency(conv_relu(), target(1.0), 1, EXACT.model_copy(update={"on_chip_bytes": 1e6}))
    assert on_chip.ms == pytest.approx(72 / 1e9 * 1e3)  # still memory-bound at 1 GB/s, on the weights alone
    (big,) = kernel_costs(conv_relu(), target(1.0), batch=64)
    assert big.dram_bytes(1e3) == big.bytes  # 64 images' activations do not fit in 1 kB


def test_int8_kernels_use_the_int8_peak_and_one_byte_per_value():
    (conv,) = kernel_costs(conv_relu(int8=True), target(1.0), batch=1)
    assert conv.int8 and conv.bytes == 16 + 4 * 32 + 18  # int8 input and weights; the float output stays fp32
    estimate = estimate_latency(conv_relu(int8=True), target(1e9), 1, EXACT)
    assert estimate.ms == pytest.approx(608 / 4e12 * 1e3)
    assert estimate.to_dict()["kind"] == "estimated"


def test_grouped_convs_have_their_own_efficiency():
    inits = [numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")]
    depthwise = graph([helper.make_node("Conv", ["input", "w"], ["output"], group=4, pads=[1, 1, 1, 1])], inits,
                      channels=4)
    calibration = EXACT.model_copy(update={"grouped_efficiency": 0.1})
    dense = estimate_latency(depthwise, target(1e9), 1, EXACT)
    assert estimate_latency(depthwise, target(1e9), 1, calibration).ms == pytest.approx(10 * dense.ms)


def test_every_estimate_record_carries_its_uncertainty(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(residual_block(int8=True).SerializeToString())
    for name in list_targets():
        profile = load_target(name)
        if profile.is_host:
            continue
        records = estimate_records(path, profile)
        assert [r.batch for r in records] == list(profile.batch_sizes)
        for r in records:
            assert r.kind is LatencyKind.ESTIMATED and r.ms > 0 and "not a measurement" in r.note
            Latency.model_validate(r.to_dict())  # the report schema accepts it
            validation = profile.estimate.validation
            if validation is None:
                assert r.uncertainty_pct is None and "unvalidated" in r.uncertainty() and "unvalidated" in r.note
            elif r.outside_validated_range:  # a 2-channel 4×4 block is far below any published model
                assert r.uncertainty_pct is None and r.held_out_measurements == 0
                assert "unvalidated for a model of this size" in r.uncertainty() and "unvalidated" in r.note
            else:
                assert r.uncertainty_pct == pytest.approx(100 * validation.median_abs_error, abs=0.05)
                assert r.held_out_measurements == validation.held_out
                assert f"on {validation.held_out} held-out public measurement" in r.uncertainty()


def test_small_student_on_jetson_is_unvalidated_for_its_size(tmp_path):
    """The 70K-parameter, 5.5 M-MAC cnn-small student: no ± from detectors 200× its size."""
    from edgekd.onnx_export import export_onnx

    student = create_model("cnn-small", in_channels=1, num_classes=10, input_size=(28, 28))
    path = tmp_path / "student.onnx"
    path.write_bytes(export_onnx(student, (1, 28, 28)).SerializeToString())
    for r in estimate_records(path, load_target("jetson-orin")):
        assert r.kind is LatencyKind.ESTIMATED and r.ms > 0
        assert r.uncertainty_pct is None and r.held_out_measurements == 0
        assert "unvalidated for a model of this size" in r.uncertainty()
        assert re.search(r"^5\.5\d M MACs, validated [\d.]+ [MG]-[\d.]+ G; 70\.\d K parameters, validated",
                         r.outside_validated_range)
        assert "±" not in r.uncertainty() and "unvalidated for a model of this size" in r.note
        Latency.model_validate(r.to_dict())
        assert "unvalidated for a model of this size" in describe_uncertainty(
            "estimated", r.uncertainty_pct, r.held_out_measurements, r.outside_validated_range)


def big_int8_conv(tmp_path: Path) -> Path:
    """A ResNet-50-size int8 model: one 1024→1024 3×3 conv at 32×32 (9.7 G MACs, 9.4 M parameters), Q/DQ."""
    inits = [numpy_helper.from_array(np.ones((1024, 1024, 3, 3), np.int8), "w"),
             numpy_helper.from_array(np.full(1024, 0.1, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(1024, np.int8), "wz")]
    nodes = []
    source = qdq("input", "dq", nodes, inits)
    nodes += [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
              helper.make_node("Conv", [source, "wf"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["output"], name="relu")]
    path = tmp_path / "big.onnx"
    path.write_bytes(graph(nodes, inits, channels=1024, size=32).SerializeToString())
    return path


def test_model_inside_the_validated_range_gets_the_profiles_error(tmp_path):
    profile = load_target("jetson-orin")
    validation = profile.estimate.validation
    records = estimate_records(big_int8_conv(tmp_path), profile)
    for r in records:
        assert r.outside_validated_range == ""
        assert r.uncertainty_pct == pytest.approx(100 * validation.median_abs_error, abs=0.05)
        assert r.uncertainty().startswith("±") and f"on {validation.held_out} held-out" in r.uncertainty()
    summary = ModelSummary.of(kernel_costs(onnx.load(str(tmp_path / "big.onnx")), profile, 1), profile)
    assert summary.macs == 1024 * 1024 * 9 * 32 * 32 and summary.params == 1024 * 1024 * 9
    assert summary.kernels == ("dense",) and summary.precision == "int8"
    # outside on one axis only: the gap names that axis
    assert outside_validated_range(summary, 64, validation) == "batch 64, validated 1-16"  # the AGX rows reach batch 16 (YOLOv7)


def test_device_benchmark_json_has_enough_published_rows_and_its_lomo_median():
    result = json.loads(RESULTS.read_text())
    rows = result["rows"]
    assert result["row_count"] == len(rows) >= 20
    assert len({r["model"] for r in rows}) >= 5
    assert {r["device"] for r in rows} == {"jetson-orin", "jetson-orin-nx", "jetson-orin-nano"}
    for r in rows:
        assert r["source"] and r["published_ms"] > 0 and r["lomo_estimated_ms"] > 0 and r["precision"] and r["batch"]
        assert r["lomo_abs_rel_error"] == pytest.approx(abs(r["lomo_estimated_ms"] / r["published_ms"] - 1), abs=1e-3)
    errors = [r["lomo_abs_rel_error"] for r in rows]
    assert result["lomo_median_abs_rel_error"] == pytest.approx(statistics.median(errors), abs=1e-4)
    worst = result["lomo_worst_row"]
    assert worst["lomo_abs_rel_error"] == max(errors)
    assert result["free_parameters"] < min(fold["training_rows"] for fold in result["lomo_folds"].values())


def test_the_20_percent_target_is_stated_as_measured_and_the_error_does_not_grow():
    """The issue's bar is a 20% held-out median over the rows; the committed calibration reaches 15.2% over 92 rows,
    nested (met; 21.5% over the 84 rows before YOLOv7's were added). The JSON and the README say so (rendered from
    ``lomo_target_met``); a change that makes it worse fails here."""
    result = json.loads(RESULTS.read_text())
    median = result["lomo_median_abs_rel_error"]
    assert result["lomo_target_met"] == (median <= 0.2)
    assert median <= 0.153  # committed: 0.152


def test_the_form_of_the_fit_is_chosen_without_the_held_out_family():
    """Nested cross-validation: each fold's form is the one with the smallest leave-one-family-out median over the
    other families (ties: VARIANTS order). The form every earlier revision used read 54.2% through the new fitter
    on the 84 rows before YOLOv7's, as it had before the rewrite (checked at f9e41a7); on the 92 rows it reads
    26.2%: one 8-row family moved it 28 points."""
    result = json.loads(RESULTS.read_text())
    names = [v.name for v in VARIANTS]
    assert list(result["variants"]) == names
    for fold in result["lomo_folds"].values():
        inner = fold["inner_lomo_median"]
        assert fold["variant"] == min(names, key=lambda n: (inner[n], names.index(n)))
    assert result["variants"]["shared-median"]["lomo_median_abs_rel_error"] == 0.2625  # 0.5423 on the 84 rows
    plain = {n: v["lomo_median_abs_rel_error"] for n, v in result["variants"].items()}
    assert result["variant"] == min(names, key=lambda n: (plain[n], names.index(n)))
    # the chosen form's own figure is chosen by it, so optimistic: the nested one is what is reported
    assert plain[result["variant"]] <= result["lomo_median_abs_rel_error"]
    assert result["free_parameters"] == next(v for v in VARIANTS if v.name == result["variant"]).free_parameters


def test_the_fitter_recovers_a_launch_overhead_per_device_and_predicts_held_out_families_exactly():
    """Synthetic rows made from a known grid point with a launch overhead per device: only the per-device forms
    fit them, nested selection picks one in every fold, and every held-out family is predicted exactly."""
    rng = np.random.default_rng(0)
    families = [f"f{i}" for i in range(4) for _ in DEVICES]
    devices = [d for _ in range(4) for d in DEVICES]
    base = rng.uniform(1.0, 5.0, len(devices))  # ms at the true compute point; the other is 1.7x slower
    kernels = rng.integers(20, 200, len(devices))
    launch_us = np.array(GRID["launch_overhead_us"])
    estimates = np.stack([(b * base[None, :] + kernels[None, :] * launch_us[:, None] / 1e3)[None]
                          for b in (1.7, 1.0)])  # (compute 2, overhead 1, launch 5, rows)
    true_launch = {"jetson-orin": 2, "jetson-orin-nx": 4, "jetson-orin-nano": 3}
    published = np.array([estimates[1, 0, true_launch[d], r] for r, d in enumerate(devices)])
    fitter = Fitter(estimates, published, families, devices)
    held_out, folds = fitter.nested()
    assert np.allclose(held_out, published, rtol=1e-9)
    assert {fold["variant"] for fold in folds.values()} == {"per-device-median"}  # first per-device form on a tie
    final = fitter.fit(fitter.select(), frozenset())
    assert [final.calibration(d)["launch_overhead_us"] for d in DEVICES] == [10.0, 40.0, 20.0]
    assert fitter.per_variant()["shared-median"]["lomo_median_abs_rel_error"] > 0.05


def test_a_per_device_form_without_rows_on_a_device_fits_its_shared_counterpart():
    """Leaving out the only family on the Orin Nano leaves its launch overhead unconstrained: the per-device form
    falls back on one launch overhead for all devices instead of the grid's first value."""
    devices = ["jetson-orin", "jetson-orin-nx"] * 2 + ["jetson-orin-nano"] * 2
    launch_us = np.array(GRID["launch_overhead_us"])
    estimates = np.stack([(np.linspace(1.0, 3.0, 6)[None, :] + 50 * launch_us[:, None] / 1e3)[None]])
    fitter = Fitter(estimates, estimates[0, 0, 3] * 1.01, ["a", "a", "b", "b", "c", "c"], devices)
    without_nano = fitter.fit(VARIANTS[3], frozenset({"c"}))
    assert without_nano.variant.name == "shared-log" and len(set(without_nano.launch)) == 1
    assert fitter.fit(VARIANTS[3], frozenset({"a"})).variant.name == "per-device-log"


def test_the_committed_per_device_calibration_can_predict_the_next_batch():
    """A first look predicts new rows with the calibration committed before them: the profiles' per-device one
    maps back to its grid point, and one calibration for all devices still does."""
    calibrations = json.loads(RESULTS.read_text())["calibration"]
    choice = choice_at(calibrations)
    assert [choice.calibration(d) for d in DEVICES] == [calibrations[d] for d in DEVICES]
    shared = choice_at(calibrations["jetson-orin"])
    assert len(set(shared.launch)) == 1 and shared.calibration("jetson-orin-nx") == calibrations["jetson-orin"]
    with pytest.raises(ValueError, match="more than the launch overhead"):
        choice_at({**calibrations, "jetson-orin-nx": {**calibrations["jetson-orin-nx"], "memory_efficiency": 1.0}})
    with pytest.raises(ValueError, match="not a point of GRID"):
        choice_at({**calibrations["jetson-orin"], "memory_efficiency": 0.55})
    with pytest.raises(ValueError, match="names every device"):
        choice_at({"jetson-orin": calibrations["jetson-orin"]})


def test_rows_added_later_were_first_predicted_by_the_calibration_before_them():
    """The YOLO11 rows came after the 28-row calibration, the YOLOv8 sizes after the 58-row one, EfficientViT after
    the 68-row one, YOLOv7 after the nested revision: each batch's error under the calibration committed before it
    (a first look: 18.0%, 19.2%, 118.8%, 13.8%) is recorded, each family's error is given apart, and the
    re-published runs of the same setups bound what is reachable."""
    result = json.loads(RESULTS.read_text())
    rows = result["rows"]
    looks = {look["batch"]: look for look in result["first_looks"]}
    assert set(looks) == {"yolo11", "yolov8", "efficientvit", "yolov7"}
    # YOLOv7 came after the nested revision: the revised calibration (per device) against the one it replaced
    yolov7 = looks["yolov7"]
    assert yolov7["rows"] == 8 and set(yolov7["calibration_before"]) == set(DEVICES)
    assert yolov7["median_abs_rel_error"] < yolov7["compared_with"]["median_abs_rel_error"]  # 13.8% < 16.5%
    assert yolov7["compared_with"]["calibration"]["launch_overhead_us"] == 40.0
    assert looks["efficientvit"]["rows"] == 16 and looks["efficientvit"]["median_abs_rel_error"] > 1.0  # 118.8%
    assert "without a CUDA graph" in looks.pop("efficientvit")["note"]
    assert looks["yolo11"]["rows"] == sum(r["model"].startswith("yolo11") for r in rows) == 30
    assert looks["yolov8"]["rows"] == 10  # the sizes from Ultralytics' guide (yolov8n's trtexec rows came before)
    assert looks["yolo11"]["calibration_before"]["on_chip_bytes"] == 0.0  # the model as it was: no on-chip term
    for look in looks.values():
        assert 0.1 <= look["median_abs_rel_error"] <= 0.25 and look["max_abs_rel_error"] >= look["median_abs_rel_error"]
    families = result["per_family"]
    assert sum(f["rows"] for f in families.values()) == len(rows) and families["yolo11"]["rows"] == 30
    yolo = sorted(r["lomo_abs_rel_error"] for r in rows if r["model"].startswith("yolo11"))
    assert families["yolo11"]["lomo_median_abs_rel_error"] == pytest.approx(statistics.median(yolo), abs=1e-4)
    assert set(result["lomo_folds"]) == set(families)  # each family's widths are held out together
    spread = result["repeat_spread"]
    assert spread["pairs"] == 30 and 0.01 <= spread["median_abs_rel_difference"] <= 0.1


def test_each_profile_carries_what_the_device_benchmark_measured():
    result = json.loads(RESULTS.read_text())
    for device, measured in result["per_device"].items():
        calibration = result["calibration"][device]
        profile = load_target(device)
        validation = profile.estimate.validation
        assert validation is not None and validation.method == "nested leave-one-model-out", device
        assert validation.held_out == measured["rows"]
        assert validation.median_abs_error == pytest.approx(measured["lomo_median_abs_error"], abs=1e-3)
        assert validation.max_abs_error == pytest.approx(measured["lomo_max_abs_error"], abs=1e-3)
        fitted = profile.estimate.model_dump(exclude={"validation"}, exclude_none=True)
        assert fitted == pytest.approx(calibration), device  # the profile carries the numbers that were checked
        v, published = validation.validated, measured["validated"]
        assert v.macs == (published["macs_min"], published["macs_max"])
        assert v.params == (published["params_min"], published["params_max"])
        assert list(v.kernels) == published["kernels"] and [p.value for p in v.precisions] == published["precisions"]
        assert v.batch == (published["batch_min"], published["batch_max"])


def test_unknown_calibration_key_is_an_error_with_its_line(tmp_path):
    from edgekd.errors import ConfigError

    text = (builtin_dir("targets") / "jetson-orin.yaml").read_text().replace("memory_efficiency:", "memory_eff:")
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"mine.yaml:\d+: estimate.memory_eff: unknown key"):
        load_target(str(path))


def test_without_a_cuda_graph_a_kernel_takes_at_least_its_launch():
    calibration = EXACT.model_copy(update={"launch_overhead_us": 50.0})
    graphed = estimate_latency(conv_relu(), target(1e9), 1, calibration, cuda_graph=True)
    enqueued = estimate_latency(conv_relu(), target(1e9), 1, calibration)
    assert graphed.ms == pytest.approx(608 / 1e12 * 1e3)  # the tiny conv alone
    assert enqueued.ms == pytest.approx(50e-3)  # its launch is longer than it: the launch is what it costs
