"""Inference backends, imported only when used: ``get_runtime('onnxruntime')``.

Each backend module offers ``evaluate(onnx_path, loader, ...)`` and
``measure_latency(onnx_path, input_shape, batch, ...)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.errors import ConfigError, UnknownNameError
from edgekd.registry import register
from edgekd.runtime.descriptor import descriptor, list_runtimes

# The built-in backends are the modules their descriptors (edgekd/runtime/<name>.yaml) name.
RUNTIMES = {d.name: d.module for d in map(descriptor, list_runtimes()) if d.module}


def register_runtime(name: str, module: str, *, override: bool = False) -> None:
    """Add an inference backend: ``module`` (an import path, imported only when the runtime is used) offers
    ``evaluate(onnx_path, loader, ...)`` and ``measure_latency(onnx_path, input_shape, batch, ...)``."""
    if not isinstance(module, str) or not module:
        raise ConfigError(f"register_runtime('{name}', module) takes the module's import path as a string "
                          f"(imported when the runtime is used), not {module!r}")
    register(RUNTIMES, "runtime", name, module, override=override)


def get_runtime(name: str) -> ModuleType:
    if name not in RUNTIMES:
        raise UnknownNameError("runtime", name, RUNTIMES)
    return importlib.import_module(RUNTIMES[name])
