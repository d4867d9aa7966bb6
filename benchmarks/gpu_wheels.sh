#!/usr/bin/env bash
# Wheels the GPU machine lacks, for benchmarks/gpu_check.py there (no network on that machine).
#
# The GPU machine's image has Python 3.12, a CUDA PyTorch, onnx, onnxruntime, numpy, scipy, rich,
# typer, pyyaml, pillow, safetensors, pytest ... but not nncf (and two of its needs), onnxsim,
# torch-pruning or pydantic. This downloads exactly those, at the versions this venv runs, as
# cp312 manylinux x86-64 wheels, without their dependencies, into gpu_wheels/ (git-ignored), plus
# hatchling for `pip install -e . --no-build-isolation`. torch is never downloaded.
#
# Run here, from the repository root:  bash benchmarks/gpu_wheels.sh
# Install there (the command is in benchmarks/gpu_check.py's docstring):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site gpu_wheels/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=gpu_wheels
LIMIT_MIB=60  # the device tool carries at most 64 MiB of ignored paths, the rest of the tree included

# The versions this venv runs (so the GPU machine runs what the tests here ran).
# typing-extensions too: pydantic-core needs >= 4.16, newer than the image may hold (it is backward compatible).
PACKAGES=(nncf openvino-telemetry pydot onnxsim torch-pruning pydantic pydantic-core annotated-types
          typing-inspection typing-extensions)
pins=$("$PY" - "${PACKAGES[@]}" <<'PY'
import sys
from importlib import metadata
print(" ".join(f"{name}=={metadata.version(name)}" for name in sys.argv[1:]))
PY
)
pins="$pins hatchling trove-classifiers tomlkit editables"  # hatchling builds the editable install

rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
# pip matches manylinux tags exactly: list the ones these wheels are published under.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 --platform any -d "$OUT.tmp" $pins
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"

ls -1 "$OUT"
echo
kib=$(du -sk "$OUT" | cut -f1)
echo "gpu_wheels: $(ls "$OUT" | wc -l) wheels, $((kib / 1024)) MiB ($kib KiB)"
if [ "$kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "error: gpu_wheels is over $LIMIT_MIB MiB: the device tool would not carry it" >&2
    exit 1
fi
