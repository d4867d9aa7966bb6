"""The ``trtexec`` command that builds and times a TensorRT engine on the device itself.

TensorRT engines are tied to the GPU and TensorRT version that built them, so edgekd does not
ship engines built elsewhere: it writes the exact command (and ``build_engine.sh``) for the
target's device. Flags follow TensorRT 10's trtexec; the profile records the JetPack and
TensorRT versions it assumes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import onnx

from edgekd.atomic import write_text
from edgekd.targets import TargetProfile

TRTEXEC = "${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"  # where JetPack installs it
BUILD_SCRIPT = "build_engine.sh"  # a deploy file of the runtimes whose descriptor lists it


def has_qdq(onnx_path: Path) -> bool:
    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def build_flags(onnx_name: str, target: TargetProfile, input_shape: tuple[int, ...], *, sparse: bool,
                qdq: bool, input_name: str = "input") -> list[str]:
    """trtexec arguments: dynamic-batch profile over the target's batch sizes, precision, sparsity."""
    dims = "x".join(str(d) for d in input_shape)
    low, high = min(target.batch_sizes), max(target.batch_sizes)
    flags = [f"--onnx={onnx_name}", "--saveEngine=model.engine", "--timingCacheFile=timing.cache",
             f"--minShapes={input_name}:{low}x{dims}", f"--optShapes={input_name}:{high}x{dims}",
             f"--maxShapes={input_name}:{high}x{dims}"]
    if qdq:
        flags.append("--stronglyTyped")  # explicit quantization: precisions come from the Q/DQ nodes
    elif target.precision.value in ("fp16", "int8"):
        flags.append("--fp16")  # int8 needs Q/DQ from a quantize stage; until then the engine is fp16
    if sparse:
        flags.append("--sparsity=enable")
    return flags


def write_build_script(out_dir: Path, onnx_path: Path, target: TargetProfile, input_shape: tuple[int, ...], *,
                       sparse: bool) -> tuple[Path, str]:
    """``build_engine.sh`` beside the model: build the engine, then time it at each batch size."""
    flags = build_flags(onnx_path.name, target, input_shape, sparse=sparse, qdq=has_qdq(onnx_path))
    command = f'"{TRTEXEC}" ' + " ".join(shlex.quote(f) for f in flags)
    dims = "x".join(str(d) for d in input_shape)
    timing = "\n".join(f'"{TRTEXEC}" --loadEngine=model.engine --shapes=input:{b}x{dims} --warmUp=500 '
                       f"--iterations=200 --avgRuns=1 --percentile=50,90,99 | tee timing-b{b}.txt"
                       for b in target.batch_sizes)
    versions = target.software.model_dump(exclude_none=True) if target.software else {}
    software = ", ".join(f"{k} {v}" for k, v in versions.items()) or "no particular versions"
    script = f"""#!/usr/bin/env bash
# Build and time the TensorRT engine for {target.name} ({target.description}).
# Run this on the device itself: engines do not carry over between GPUs or TensorRT versions.
# The profile assumes {software}.
set -euo pipefail
cd "$(dirname "$0")"
{command}
{timing}
"""
    path = out_dir / BUILD_SCRIPT
    write_text(path, script)
    path.chmod(0o755)
    return path, command
