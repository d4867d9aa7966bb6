"""Runtime descriptors (edgekd/runtime/*.yaml): each validates, names its backend, round-trips, and says what the
code said before it was data; the host comparer takes ONNX models."""

import importlib
import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgekd.builtin import descriptor_dir
from edgekd.deploy import write_bundle
from edgekd.errors import ConfigError, EdgekdError, UnknownNameError
from edgekd.quantize.scheme import Scheme
from edgekd.runtime import RUNTIMES, get_runtime
from edgekd.runtime.compare import HostComparer
from edgekd.runtime.descriptor import (Measure, RuntimeDescriptor, descriptor, descriptor_path, list_runtimes,
                                       load_descriptor, to_yaml)
from edgekd.runtime.host import check_can_stand_for
from edgekd.runtime.trtexec import write_build_script
from edgekd.targets import Runtime, TargetProfile, list_targets, load_target

# What the code said before it was data (edgekd/deploy.py PROVIDERS, quantize/compliance.py RULES, fusion.py's
# TensorRT branches, estimate.py's fp16 rule, the export stage's build script for TensorRT only).
PROVIDERS = {"tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
             "onnxruntime": ("CPUExecutionProvider",),
             "openvino": ("OpenVINOExecutionProvider", "CPUExecutionProvider")}
BUNDLE = ("model.onnx", "preprocessing.json", "infer.py")
DEPLOY_FILES = {"tensorrt": BUNDLE + ("build_engine.sh",), "onnxruntime": BUNDLE, "openvino": BUNDLE}
SCHEME = {"tensorrt": Scheme.TENSORRT, "onnxruntime": Scheme.CPU, "openvino": Scheme.CPU}
RULES = {  # dtypes, zero_point_zero, per_axis_on_activations, per_axis_output_channel_only, qoperator_ops
    "tensorrt": ({"int8"}, True, False, True, False),
    "onnxruntime": ({"int8", "uint8"}, False, False, False, True),
    "openvino": ({"int8", "uint8"}, False, False, False, False),
}
FUSION = {  # free ops, epilogue, point-wise chains, residual
    "tensorrt": (("Split", "Slice"), "pointwise", True, "any"),
    "onnxruntime": ((), "fused-conv", False, "float-conv"),
    "openvino": ((), "fused-conv", False, "float-conv"),
}
FLOAT_LAYERS = {"tensorrt": {"int8": "fp16", "fp16": "fp16", "fp32": "fp32"},
                "onnxruntime": {"int8": "fp32", "fp16": "fp32", "fp32": "fp32"},
                "openvino": {"int8": "fp32", "fp16": "fp32", "fp32": "fp32"}}
MODULES = {"tensorrt": "edgekd.runtime.tensorrt", "onnxruntime": "edgekd.runtime.onnxruntime", "openvino": None}


def test_one_runtime_per_descriptor_file():
    assert sorted(p.stem for p in descriptor_dir().glob("*.yaml")) == list_runtimes() == sorted(r.value for r in Runtime)
    assert set(list_runtimes()) == set(MODULES)  # a new runtime: add its pins above


@pytest.mark.parametrize("name", list_runtimes())
def test_every_descriptor_validates_and_round_trips(name):
    found = descriptor(name)
    assert found.name == name and found.runtime is Runtime(name) and descriptor(Runtime(name)) is found
    again = RuntimeDescriptor.model_validate(yaml.safe_load(to_yaml(found)))
    assert again == found
    assert load_descriptor(descriptor_path(name)) == found


@pytest.mark.parametrize("name", list_runtimes())
def test_every_descriptor_names_a_backend_that_imports_where_its_runtime_is(name):
    found = descriptor(name)
    assert found.module == MODULES[name]
    if found.module is None:
        assert found.measure is Measure.HOST  # nothing of its own to measure with
        return
    assert importlib.util.find_spec(found.module) is not None
    assert RUNTIMES[name] == found.module  # the backend registry is made from the descriptors
    if found.available():
        assert get_runtime(name) is importlib.import_module(found.module)


@pytest.mark.parametrize("name", list_runtimes())
def test_every_descriptor_says_what_the_code_said_before(name):
    found = descriptor(name)
    assert found.deploy.execution_providers == PROVIDERS[name]
    assert found.deploy.files == DEPLOY_FILES[name]
    rules = found.compliance
    assert (set(rules.dtypes), rules.zero_point_zero, rules.per_axis_on_activations,
            rules.per_axis_output_channel_only, rules.qoperator_ops) == RULES[name]
    fusion = found.fusion
    assert (fusion.free, fusion.epilogue.value, fusion.pointwise_chains, fusion.residual.value) == FUSION[name]
    assert {k.value: v.value for k, v in found.estimate.float_precision.items()} == FLOAT_LAYERS[name]
    assert found.measure is (Measure.ENGINE if name == "tensorrt" else Measure.HOST)


@pytest.mark.parametrize("name", list_runtimes())
def test_a_profile_in_the_runtimes_own_scheme_gets_the_scheme_the_code_used(name):
    own = descriptor(name).quantization.activations[0]
    data = {**load_target("host").model_dump(), "runtime": name, "quantization": {"activations": own}}
    assert Scheme.for_target(TargetProfile.model_validate(data)) is SCHEME[name]


@pytest.mark.parametrize("target", list_targets())
def test_every_shipped_profile_asks_for_a_scheme_its_runtime_runs(target):
    profile = load_target(target)
    descriptor(profile.runtime).check_target(profile)
    assert Scheme.for_target(profile) is (Scheme.TENSORRT if profile.runtime is Runtime.TENSORRT else Scheme.CPU)


def test_a_profile_asking_tensorrt_for_unsigned_activations_is_refused():
    data = load_target("jetson-orin").model_dump()
    data["quantization"]["activations"] = "uint8-asymmetric"
    with pytest.raises(ConfigError, match="TensorRT runs int8-symmetric activations"):
        Scheme.for_target(TargetProfile.model_validate(data))


def test_a_bad_descriptor_is_one_error_with_file_and_line(tmp_path):
    text = descriptor_path("onnxruntime").read_text().replace("residual: float-conv", "residual: float-conv\n  bogus: 1")
    (tmp_path / "onnxruntime.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"onnxruntime.yaml:\d+: fusion.bogus: unknown key 'bogus'"):
        load_descriptor(tmp_path / "onnxruntime.yaml")
    with pytest.raises(UnknownNameError, match="Known runtimes: onnxruntime, openvino, tensorrt"):
        descriptor("tensorrtt")


def test_loading_every_descriptor_imports_no_backend():
    code = ("import sys\nfrom edgekd.runtime.descriptor import descriptor, list_runtimes\n"
            "[descriptor(r) for r in list_runtimes()]\n"
            "print(sorted(m for m in ('onnxruntime', 'tensorrt', 'openvino', 'nncf') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def conv_model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("name", list_runtimes())
def test_the_deploy_folder_holds_the_descriptors_files_and_providers(name, tmp_path):
    profile = load_target("jetson-orin" if name == "tensorrt" else "x86-avx2")
    profile = profile.model_copy(update={"runtime": Runtime(name)})
    onnx.save(conv_model(), tmp_path / "model.onnx")
    out = tmp_path / "run"
    out.mkdir()
    script = None
    if "build_engine.sh" in descriptor(name).deploy.files:
        script, _ = write_build_script(out, tmp_path / "model.onnx", profile, (1, 8, 8), sparse=False)
    bundle = write_bundle(out, tmp_path / "model.onnx", profile, {"mean": [0.0], "std": [1.0]}, build_script=script)
    assert sorted(p.name for p in bundle.iterdir()) == sorted(DEPLOY_FILES[name])
    spec = yaml.safe_load((bundle / "preprocessing.json").read_text())  # JSON is YAML
    assert spec["runtime"] == name and tuple(spec["providers"]) == PROVIDERS[name]


def test_a_tensorrt_target_is_not_measured_where_tensorrt_is_missing():
    if descriptor("tensorrt").available():
        pytest.skip("TensorRT is installed here, so there is no missing TensorRT to refuse (this checks the refusal "
                    "where it is absent; tests/test_cuda.py and the GPU check cover machines with it)")
    with pytest.raises(EdgekdError, match=r"TensorRT is not installed here.*\(JetPack ships TensorRT\)"):
        check_can_stand_for(load_target("jetson-orin"))


def test_the_host_comparer_times_onnx_models_and_refuses_pytorch_ones(tmp_path):
    model = conv_model()
    onnx.save(model, tmp_path / "file.onnx")
    with HostComparer(model, (1, 8, 8), threads=1, runs=5) as timer:
        for candidate in (model, model.SerializeToString(), tmp_path / "file.onnx"):
            (comparison,) = timer.compare(candidate, (2,))
            # the model against itself: 5 runs on a shared core say nothing about speed, so only that every
            # form (proto, bytes, file) was timed as asked; speedup > 0 is a finite ratio of two timings
            assert comparison.batch == 2 and comparison.speedup > 0 and comparison.candidate.runs == 5
        with pytest.raises(TypeError, match="export it first"):
            timer.compare(nn.Conv2d(1, 4, 3), (1,))
