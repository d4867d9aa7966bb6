"""The run folder's ``deploy/``: everything to copy onto the device, and nothing else.

* ``model.onnx``: the exported model (int8 Q/DQ after a quantize stage), as checked by the export stage.
* ``preprocessing.json``: how to turn an image into the model's input, its output names, and the class names.
* ``infer.py``: a short inference example for the target's runtime (ONNX Runtime; on a Jetson
  it asks for ONNX Runtime's TensorRT and CUDA providers first).
* ``build_engine.sh`` (TensorRT targets): the ``trtexec`` build and timing commands, to run on
  the device itself (engines do not carry over between GPUs or TensorRT versions).

Which of these a runtime gets, and the providers ``infer.py`` asks for, are its descriptor's ``deploy``
section (``edgekd/runtime/<name>.yaml``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from edgekd.atomic import atomic_path, write_json, write_text
from edgekd.runtime.descriptor import descriptor
from edgekd.targets import TargetProfile

INFER_TEMPLATE = Path(__file__).parent / "templates" / "infer.py"


def write_bundle(out_dir: Path, onnx_path: Path, target: TargetProfile, preprocessing: dict, *,
                 build_script: Path | None = None) -> Path:
    """Write ``out_dir/deploy`` for ``target``; returns its path."""
    providers = list(descriptor(target.runtime).deploy.execution_providers)
    bundle = out_dir / "deploy"
    bundle.mkdir(parents=True, exist_ok=True)
    with atomic_path(bundle / "model.onnx") as tmp:
        shutil.copyfile(onnx_path, tmp)
    outputs = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    write_json(bundle / "preprocessing.json", {**preprocessing, "input_name": "input", "output_name": outputs[0],
                                               "output_names": outputs,
                                               "target": target.name, "runtime": target.runtime.value,
                                               "providers": providers,
                                               "threads": target.threads})
    write_text(bundle / "infer.py", INFER_TEMPLATE.read_text())
    (bundle / "infer.py").chmod(0o755)
    if build_script is not None:
        write_text(bundle / build_script.name, build_script.read_text())
        (bundle / build_script.name).chmod(0o755)
    return bundle
