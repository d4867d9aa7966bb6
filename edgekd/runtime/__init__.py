"""Inference backends, imported only when used: ``get_runtime('onnxruntime')``.

Each backend module offers ``evaluate(onnx_path, loader, ...)`` and
``measure_latency(onnx_path, input_shape, batch, ...)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.errors import UnknownNameError

RUNTIMES = {"onnxruntime": "edgekd.runtime.onnxruntime", "tensorrt": "edgekd.runtime.tensorrt"}


def get_runtime(name: str) -> ModuleType:
    if name not in RUNTIMES:
        raise UnknownNameError("runtime", name, RUNTIMES)
    return importlib.import_module(RUNTIMES[name])
