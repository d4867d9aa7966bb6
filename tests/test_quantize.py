"""int8: the Q/DQ rules per runtime, both schemes on a real model, accuracy control, QAT, export, the recipe."""

import copy
import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from conftest import DISTILLED_ON_A_SUBSET, run_cli, run_stage, stage_ctx
from onnx import TensorProto, helper, numpy_helper

from edgekd.data import DataSpec, load_data
from edgekd.distill.recovery import RecoveryConfig
from edgekd.errors import ExportError, QuantizeError
from edgekd.metrics import resolve_metric
from edgekd.models.loading import build_model
from edgekd.quantize import compliance
from edgekd.quantize.graph import float_layers, quantizers
from edgekd.quantize.qat import fold_batchnorm
from edgekd.quantize.scheme import Scheme, sign_activations
from edgekd.runtime.onnxruntime import create_session, evaluate
from edgekd.stages.base import Handoff
from edgekd.stages.export import ExportStage
from edgekd.stages.quantize import QuantizeStage
from edgekd.targets import Runtime
from edgekd.train import TrainConfig, fit

# --- the compliance checker on hand-made graphs -------------------------------------------------


def qdq_conv_graph(*, act_dtype=np.int8, act_zero_point=0, weight_axis=0, qlinear=False) -> onnx.ModelProto:
    """input → Q → DQ → Conv(weights: int8 + DQ, per output channel on ``weight_axis``) → output."""
    weight = np.ones((4, 3, 3, 3), np.int8)
    scales = np.full(weight.shape[weight_axis], 0.1, np.float32)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "act_scale"),
             numpy_helper.from_array(np.array(act_zero_point, act_dtype), "act_zp"),
             numpy_helper.from_array(weight, "w_int8"), numpy_helper.from_array(scales, "w_scale"),
             numpy_helper.from_array(np.zeros_like(scales, np.int8), "w_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "act_scale", "act_zp"], ["q"], name="act_quant"),
             helper.make_node("DequantizeLinear", ["q", "act_scale", "act_zp"], ["dq"], name="act_dequant"),
             helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zp"], ["w"], name="weight_dequant",
                              axis=weight_axis),
             helper.make_node("Conv", ["dq", "w"], ["output"], name="conv")]
    if qlinear:
        nodes.append(helper.make_node("QLinearConv", ["q", "act_scale", "act_zp", "w_int8", "w_scale", "w_zp",
                                                      "act_scale", "act_zp"], ["q2"], name="qlinear_conv"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_signed_symmetric_graph_passes_every_runtime():
    for runtime in Runtime:
        assert compliance.check(qdq_conv_graph(), runtime) == []


def test_checker_flags_uint8_activations_for_tensorrt_by_node():
    violations = compliance.check(qdq_conv_graph(act_dtype=np.uint8), Runtime.TENSORRT)
    assert {v.node for v in violations} == {"act_quant", "act_dequant"}
    assert all("uint8" in v.rule for v in violations)
    assert compliance.check(qdq_conv_graph(act_dtype=np.uint8), Runtime.ONNXRUNTIME) == []


def test_checker_flags_a_non_zero_zero_point_for_tensorrt():
    violations = compliance.check(qdq_conv_graph(act_zero_point=3), Runtime.TENSORRT)
    assert {v.node for v in violations} == {"act_quant", "act_dequant"}
    assert all("zero-point" in v.rule for v in violations)


def test_checker_flags_per_channel_weights_off_the_output_axis_and_qoperator_ops():
    violations = compliance.check(qdq_conv_graph(weight_axis=1), Runtime.TENSORRT)
    assert [v.node for v in violations] == ["weight_dequant"] and "output-channel axis 0" in violations[0].rule
    violations = compliance.check(qdq_conv_graph(qlinear=True), Runtime.TENSORRT)
    assert [v.node for v in violations] == ["qlinear_conv"]


def test_signing_keeps_the_range_and_passes_tensorrt_rules():
    model = qdq_conv_graph(act_dtype=np.uint8)
    assert sign_activations(model) == 1
    assert compliance.check(model, Runtime.TENSORRT) == []
    scale = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "act_scale"))
    assert scale * 127 == pytest.approx(0.05 * 255)  # same largest representable value


# --- the stage on a real model -----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    data = load_data(DataSpec(train_subset=4000, selection=1000, val_subset=1000))
    torch.manual_seed(0)  # the same weights every run: the stage's 1-point checks then see the same model
    model = build_model("cnn-small", data.info)
    fit(model, data, TrainConfig(epochs=2, augment=None), progress=False)  # 65.7% on the selection split
    return data, model.eval()


PTQ = {"method": "ptq", "calibration_images": 256, "score_images": 1000, "require_int8": True}


@pytest.mark.parametrize("target", ["jetson-orin", "x86-avx512-vnni"])
def test_both_schemes_give_runnable_int8_models_that_meet_their_runtime(trained, tmp_path, target):
    data, model = trained
    ctx = stage_ctx(tmp_path, data, target)
    out, row = run_stage(QuantizeStage(**PTQ), ctx, copy.deepcopy(model))
    int8 = onnx.load(str(out.int8.path))
    found = quantizers(int8)
    assert len(found) >= 10 and compliance.check(int8, ctx.target.runtime) == []
    dtypes = {q.dtype for q in found if not q.on_weight}
    if target == "jetson-orin":
        assert dtypes == {"int8"} and not any(q.zero_point_nonzero for q in found)
    else:
        assert "uint8" in dtypes  # the CPU scheme keeps ONNX Runtime's fast unsigned activations
        assert compliance.check(int8, Runtime.TENSORRT)  # and so would be refused for TensorRT
    assert row.details["drop_points"] <= 1.0
    assert evaluate(out.int8.path, ctx.selection_loader) == row.accuracy
    assert [c["batch"] for c in row.details["host_latency"]] == [1, 64]
    assert out.int8.settings["method_used"] == "ptq" and out.int8.settings["calibration_images"] == 256


def plant_fragile_layer(model: torch.nn.Module, scale: float = 1000.0) -> torch.nn.Module:
    """Same function, but one channel entering ``block2.3`` is 1000× larger than the rest.

    Per-tensor int8 of that activation then rounds every other channel to zero: quantizing the
    input of ``block2.3`` ruins the model, while keeping ``block2.3`` float repairs it.
    """
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.block2[1].weight[0] *= scale
        model.block2[1].bias[0] *= scale
        model.block2[3].weight[:, 0] /= scale
    return model


def test_accuracy_control_keeps_a_planted_fragile_layer_float(trained, tmp_path):
    data, model = trained
    fragile = plant_fragile_layer(model)
    images, _ = next(iter(stage_ctx(tmp_path / "probe", data).selection_loader))
    torch.testing.assert_close(fragile(images), model(images), rtol=1e-3, atol=1e-3)
    # the budget: what int8 costs this (briefly trained, so fragile) model anyway, plus a point
    plain = stage_ctx(tmp_path / "unplanted", data)
    _, plain_row = run_stage(QuantizeStage(**{**PTQ, "accuracy_control": False}, max_accuracy_drop=100), plain,
                             copy.deepcopy(model))
    budget = max(0.0, plain_row.details["drop_points"]) + 1.0
    with pytest.raises(QuantizeError, match="PTQ loses"):  # without accuracy control the plant breaks int8
        run_stage(QuantizeStage(**PTQ, accuracy_control=False, max_accuracy_drop=budget),
                  stage_ctx(tmp_path / "plain", data), fragile)
    # controlled, judged by the user's own metric in its own units: correct answers per thousand images
    ctx = dataclasses.replace(stage_ctx(tmp_path / "controlled", data), metric=resolve_metric(per_mille))
    _, row = run_stage(QuantizeStage(**PTQ, max_accuracy_drop=10 * budget), ctx, fragile)
    assert row.details["method"] == "ptq+accuracy-control"
    ranking = row.details["ptq"]["accuracy_control_ranking"]
    assert max(ranking, key=ranking.get) == "block2.3" and ranking["block2.3"] > 100  # per mille regained alone
    kept = {layer["layer"]: layer for layer in row.details["float_layers"]}
    assert "block2.3" in kept and kept["block2.3"]["why"].startswith("accuracy control")
    assert f"cost {kept['block2.3']['regained_points']:g} points" in kept["block2.3"]["why"]
    assert kept["block2.3"]["regained_points"] == ranking["block2.3"]  # the metric's units, not ×100 of them
    assert len(kept) <= 2  # the fragile layer, not the whole model
    assert row.details["drop_points"] <= 10 * budget


def per_mille(outputs_batches, targets_batches):
    """Top-1 as correct answers per thousand images: a user metric in its own units (one unit, one budget point)."""
    right = sum(int((o.argmax(1) == t).sum()) for o, t in zip(outputs_batches, targets_batches))
    return 1000 * right / sum(len(t) for t in targets_batches)


def test_qat_with_kd_exports_signed_int8_with_int8_weights_and_no_batchnorm(trained, tmp_path):
    data, model = trained
    ctx = stage_ctx(tmp_path, data, "jetson-orin")
    qat = RecoveryConfig(train=TrainConfig(epochs=1, lr=0.001, augment=None))
    out, row = run_stage(QuantizeStage(method="qat", calibration_images=256, max_accuracy_drop=3.0, qat=qat), ctx,
                         copy.deepcopy(model))
    int8 = onnx.load(str(out.int8.path))
    ops = [n.op_type for n in int8.graph.node]
    assert row.details["method"] == "qat+kd" and len(row.details["qat"]["history"]) == 1
    assert "BatchNormalization" not in ops
    assert compliance.check(int8, Runtime.TENSORRT) == []
    assert ops.count("QuantizeLinear") < ops.count("DequantizeLinear")  # weights are stored int8, not re-quantized
    assert float_layers(int8) == []
    create_session(out.int8.path)


@pytest.mark.parametrize(("min_speedup", "shipped"), [(100.0, "float"), (0.01, "int8")])
def test_a_cpu_target_gets_int8_only_where_it_is_faster(trained, tmp_path, min_speedup, shipped):
    data, model = trained
    ctx = stage_ctx(tmp_path, data, "host")  # measured side by side: this machine is the target
    stage = QuantizeStage(**{**PTQ, "require_int8": False}, min_speedup=min_speedup, accuracy_control=False)
    out, row = run_stage(stage, ctx, copy.deepcopy(model))
    assert row.details["shipped"] == shipped and (out.int8 is None) == (shipped == "float")
    if shipped == "float":
        assert f"not at least {min_speedup:g}× faster" in row.details["why_float"]
        assert row.accuracy == row.details["accuracy_float"]
        assert stage.restore(Handoff(model=model), ctx).int8 is None  # a resumed run ships float too
        _, export_row = run_stage(ExportStage(), ctx, model, int8=out.int8)
        assert export_row.details["precision"] == "float"


def test_batchnorm_folding_keeps_the_function(trained):
    data, model = trained
    images = torch.randn(4, 1, 28, 28)
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(images), model(images), rtol=1e-4, atol=1e-4)


def test_export_refuses_an_int8_model_its_target_runtime_would_reject(trained, tmp_path):
    data, model = trained
    cpu = stage_ctx(tmp_path / "cpu", data, "x86-avx512-vnni")
    cpu_int8, _ = run_stage(QuantizeStage(**PTQ), cpu, copy.deepcopy(model))
    jetson = stage_ctx(tmp_path / "jetson", data, "jetson-orin")
    with pytest.raises(ExportError, match="tensorrt.*uint8"):  # the x86 artifact handed to a TensorRT target
        run_stage(ExportStage(), jetson, model, int8=cpu_int8.int8)
    assert not (jetson.out_dir / "model.onnx").exists()


# --- the recipe from the CLI --------------------------------------------------------------------

RECIPE = DISTILLED_ON_A_SUBSET + """  - stage: prune
    reduction: 0.3
    round_to: 4
    latency_check: false
    recovery: {train: {epochs: 1, lr: 0.01, augment: null}}
  - stage: quantize
    calibration_images: 256
    score_images: 500
    max_accuracy_drop: 2.0
    require_int8: true        # this test is about the artifacts' Q/DQ form, not whether int8 pays here
  - stage: export
"""


def test_distill_prune_quantize_export_artifacts_differ_as_their_targets_require(tmp_path):
    recipe = tmp_path / "int8.yaml"
    recipe.write_text(RECIPE)
    artifacts = {}
    for target in ("jetson-orin", "x86-avx512-vnni"):
        out = tmp_path / target
        result = run_cli("compress", "--target", target, "--recipe", str(recipe), "--out", str(out))
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "report.json").read_text())
        quantize, export = report["stages"][3], report["stages"][4]
        assert quantize["details"]["scheme"] == ("tensorrt" if target == "jetson-orin" else "cpu")
        assert export["details"]["precision"] == "int8"
        assert export["accuracy"] >= quantize["details"]["accuracy_float"] - 0.02
        artifacts[target] = onnx.load(str(out / "model.onnx"))
    assert compliance.check(artifacts["jetson-orin"], Runtime.TENSORRT) == []
    assert "--stronglyTyped" in (tmp_path / "jetson-orin" / "build_engine.sh").read_text()
    assert compliance.check(artifacts["x86-avx512-vnni"], Runtime.TENSORRT)  # uint8 activations: not for TensorRT
    assert compliance.check(artifacts["x86-avx512-vnni"], Runtime.ONNXRUNTIME) == []


@pytest.mark.parametrize("name", ["residual", "concat", "split", "depthwise", "grouped", "reused"])
def test_every_topology_quantizes_with_full_bias_correction_or_a_recorded_fallback(name):
    """NNCF's full bias correction fails inside on some graphs (a KeyError on a concat model was seen):
    each topology must end in an int8 model, any fallback recorded with its reason, never a traceback."""
    from torch.utils.data import DataLoader, TensorDataset

    from edgekd.quantize.int8 import quantize_model
    from edgekd.quantize.ptq import BiasCorrection
    from topologies import TOPOLOGIES

    torch.manual_seed(0)
    model = TOPOLOGIES[name]().eval()
    images = torch.randn(64, 1, 16, 16)
    calibration = DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=16)
    result = quantize_model(model, calibration, scheme=Scheme.TENSORRT, bias_correction=BiasCorrection.FULL)
    assert compliance.check(result.model, Runtime.TENSORRT) == [] and len(quantizers(result.model)) >= 4
    assert all("bias correction failed inside NNCF" in f and "instead" in f for f in result.fallbacks)


def test_layers_int8_makes_slower_stay_float_until_none_is_left():
    """Hardswish and depthwise convs have no int8 kernel in ONNX Runtime on x86: read off its optimized graph."""
    from torch.utils.data import DataLoader, TensorDataset

    from edgekd.onnx_export import export_onnx
    from edgekd.quantize.ptq import BiasCorrection, quantize_onnx
    from edgekd.quantize.speed import dequantized_by_runtime, slow_int8_layers, without_slow_layers
    from edgekd.targets import load_target
    from topologies import CORPUS

    torch.manual_seed(0)
    float_model = export_onnx(CORPUS["mobilenetv3-block"]().eval(), (1, 16, 16))
    calibration = DataLoader(TensorDataset(torch.randn(32, 1, 16, 16), torch.zeros(32, dtype=torch.long)),
                             batch_size=32)

    def quantize(keep):
        return quantize_onnx(float_model, calibration, Scheme.CPU, keep_float=keep,
                             bias_correction=BiasCorrection.NONE).model

    int8 = quantize([])
    depthwise = {n.name for n in float_model.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)}
    assert depthwise and depthwise <= set(dequantized_by_runtime(int8))
    host = load_target("host")
    shipped, slow = without_slow_layers(int8, quantize, lambda m: slow_int8_layers(
        float_model, m, host, here=True, batches=(1,)), keep=[])
    assert dequantized_by_runtime(shipped) == [] and {s.node for s in slow} <= set(float_layers(shipped))
    assert len(quantizers(shipped)) > 0 or len(slow) == len(dequantized_by_runtime(int8))
    # Where this machine cannot stand for the target, the estimate decides; the host profile's calibration
    # (int8 depthwise at 1% of the int8 peak, fitted on this CPU) agrees with the runtime's graph on depthwise.
    estimated = slow_int8_layers(float_model, int8, host, here=False, batches=(1, 64))
    assert depthwise <= {s.node for s in estimated}
    assert all(s.why.startswith(f"estimated slower in int8 on {host.name}") for s in estimated)
