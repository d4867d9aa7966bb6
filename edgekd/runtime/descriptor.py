"""What edgekd knows about each inference runtime, as data: one validated YAML file per runtime.

``edgekd/runtime/<name>.yaml`` sits beside the backend module it names (``edgekd/runtime/<name>.py``,
imported only when used) and holds everything the rest of edgekd asks about that runtime:

* ``quantization``: the Q/DQ schemes a target profile of this runtime may ask for (the first is its own);
* ``compliance``: what it accepts in a Q/DQ model (:mod:`edgekd.quantize.compliance` checks it);
* ``fusion``: which ONNX nodes it runs as one kernel (:mod:`edgekd.fusion`, for the latency estimate);
* ``estimate``: the precision its float layers run at, per profile precision (:mod:`edgekd.estimate`);
* ``deploy``: the files ``deploy/`` holds for it and the ONNX Runtime execution providers ``infer.py``
  asks for (:mod:`edgekd.deploy`);
* ``measure``: how a latency on its device is measured here (:mod:`edgekd.runtime.host`, ``edgekd bench``).

Code reads a descriptor instead of testing ``runtime == "tensorrt"``, as NNCF keeps one backend per
framework; adding a runtime is one backend module and one YAML file (the :class:`~edgekd.targets.Runtime`
enum is made from the YAML files' names). Loading a descriptor imports no backend.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edgekd.builtin import descriptor_dir
from edgekd.errors import ConfigError, UnknownNameError
from edgekd.targets import ActivationScheme, Precision, Runtime, TargetProfile, WeightScheme
from edgekd.yamlschema import load_yaml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(str, enum.Enum):
    """Where a latency on the runtime's device can be measured."""

    HOST = "host"  # ONNX Runtime on this CPU, where this machine is that kind of CPU (ISA checked)
    ENGINE = "engine"  # the runtime's own engine, built here, only where its package imports


class Epilogue(str, enum.Enum):
    """What a convolution or matrix multiply absorbs of the point-wise nodes after it."""

    POINTWISE = "pointwise"  # any point-wise node (bias, BatchNorm, activation, ...), in any number
    FUSED_CONV = "fused-conv"  # ONNX Runtime's FusedConv: a Conv with bias/scale/BatchNorm and one activation, last


class Residual(str, enum.Enum):
    """Into which anchors a residual Add (of a tensor from outside the kernel) folds."""

    ANY = "any"  # any convolution or matrix multiply, int8 or float
    FLOAT_CONV = "float-conv"  # only a float Conv with no activation yet (the NCHWc Conv + Add + ReLU)


class Quantization(_Strict):
    """The Q/DQ schemes a target of this runtime may ask for; the first activation scheme is the runtime's own."""

    activations: tuple[ActivationScheme, ...] = Field(min_length=1)
    weights: tuple[WeightScheme, ...] = Field(min_length=1)


class QdqRules(_Strict):
    """What a runtime accepts in a quantized ONNX model."""

    dtypes: frozenset[str] = Field(min_length=1)  # element types of its quantizers: int8, uint8
    zero_point_zero: bool  # symmetric only
    per_axis_on_activations: bool
    per_axis_output_channel_only: bool  # per-channel weight scales only on the output-channel axis
    qoperator_ops: bool  # takes ONNX Runtime's QOperator format (QLinearConv, ...) as well as Q/DQ


class FusionRules(_Strict):
    """Which nodes the runtime runs as one kernel (:mod:`edgekd.fusion`)."""

    free: tuple[str, ...] = ()  # ops that cost nothing beyond the common views (reshape, concat, ...)
    epilogue: Epilogue
    pointwise_chains: bool  # consecutive point-wise nodes after no convolution fuse into one kernel
    residual: Residual


class EstimateRules(_Strict):
    """What the latency estimate assumes of the runtime (:mod:`edgekd.estimate`)."""

    float_precision: dict[Precision, Precision]  # profile precision → precision its float layers run at

    def float_layers(self, precision: Precision) -> Precision:
        return self.float_precision.get(precision, Precision.FP32)


class Deploy(_Strict):
    """What ``deploy/`` holds for the runtime, and how ``infer.py`` runs the model."""

    files: tuple[str, ...] = Field(min_length=1)
    execution_providers: tuple[str, ...] = Field(min_length=1)  # ONNX Runtime providers, best first


class RuntimeDescriptor(_Strict):
    """One inference runtime: its backend module and everything edgekd decides by runtime."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str  # the runtime's own name, for messages: "TensorRT"
    description: str
    module: str | None = None  # the backend module (lazy); None: edgekd deploys for it but does not run it
    requires: str | None = None  # the package the runtime itself is (imported only by :meth:`available`)
    install_hint: str = ""  # where the package comes from on the device, for "not installed" messages
    measure: Measure
    quantization: Quantization
    compliance: QdqRules
    fusion: FusionRules
    estimate: EstimateRules
    deploy: Deploy

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.name)

    def available(self) -> bool:
        """True where the runtime's package imports on this machine (it is imported to find out)."""
        if self.requires is None or importlib.util.find_spec(self.requires) is None:
            return False
        try:
            importlib.import_module(self.requires)
        except ImportError:  # e.g. the TensorRT stubs on the package index, which fail on import
            return False
        return True

    def check_target(self, target: TargetProfile) -> None:
        """Raise a :class:`ConfigError` where ``target`` asks for a Q/DQ scheme this runtime does not run."""
        wanted = target.quantization
        if wanted.activations not in self.quantization.activations or wanted.weights not in self.quantization.weights:
            takes = ", ".join(a.value for a in self.quantization.activations)
            raise ConfigError(f"target {target.name}: {self.title} runs {takes} activations with "
                              f"{', '.join(w.value for w in self.quantization.weights)} weights, not "
                              f"{wanted.activations.value} with {wanted.weights.value}; set the profile's "
                              "quantization to one it runs")


def descriptor_path(name: str) -> Path:
    return descriptor_dir() / f"{name}.yaml"


def list_runtimes() -> list[str]:
    return [r.value for r in Runtime]


def descriptor(runtime: Runtime | str) -> RuntimeDescriptor:
    """The validated descriptor of ``runtime`` (a :class:`Runtime` or its name), read once."""
    name = runtime.value if isinstance(runtime, Runtime) else str(runtime)
    if name not in list_runtimes():
        raise UnknownNameError("runtime", name, list_runtimes())
    return shipped_descriptor(name)


@cache
def shipped_descriptor(name: str) -> RuntimeDescriptor:
    found = load_descriptor(descriptor_path(name))
    if found.name != name:
        raise ConfigError(f"{descriptor_path(name)}: name '{found.name}' differs from the file's name '{name}'")
    return found


def load_descriptor(path: Path) -> RuntimeDescriptor:
    """A descriptor YAML file, validated (an unknown key or a bad value is a ConfigError with file and line)."""
    data, lines = load_yaml(path)
    return validate(RuntimeDescriptor, data, source=str(path), lines=lines)


def to_yaml(found: RuntimeDescriptor) -> str:
    """The descriptor as YAML data (what :func:`descriptor` reads back to an equal descriptor)."""
    data = found.model_dump(mode="json", exclude_defaults=True)
    data["compliance"]["dtypes"] = sorted(data["compliance"]["dtypes"])
    return yaml.safe_dump(data, sort_keys=False)
