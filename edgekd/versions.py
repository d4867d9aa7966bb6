"""Versions of the libraries a run depends on, for the manifest and the report."""

from __future__ import annotations

import platform
from importlib import metadata


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("edgekd", "torch", "onnx", "onnxruntime", "onnxsim", "nncf", "torch-pruning", "tensorrt"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions
