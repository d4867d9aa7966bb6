"""TensorRT where it is installed (on the device): build an engine, time it, compare it with ONNX Runtime.

Imported only when asked for; :func:`available` says whether ``tensorrt`` imports, and every
other function raises one clear :class:`~edgekd.errors.EdgekdError` when it does not. Engines
are tied to the GPU and TensorRT version that built them, so they are built on the device, from
the same ONNX file and with the same settings as ``build_engine.sh`` (:mod:`edgekd.runtime.trtexec`).

Explicit quantization follows TensorRT 10's guidance: a model with Q/DQ nodes is built as a
*strongly typed* network (precisions come from the graph, no calibrator, no precision flags);
a float model gets FP16 when the profile's precision allows it. Untested here: these machines
have no TensorRT (the device has a GPU but no TensorRT either); ``build_engine.sh`` is the path
that is checked.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from edgekd.atomic import write_bytes
from edgekd.errors import EdgekdError
from edgekd.runtime.trtexec import has_qdq
from edgekd.targets import TargetProfile


def available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> ModuleType:
    try:
        import tensorrt
    except ImportError:
        raise EdgekdError("TensorRT is not installed here; build and time the engine on the device with the run "
                          "folder's build_engine.sh (or deploy/build_engine.sh)") from None
    return tensorrt


def build_engine(onnx_path: Path, target: TargetProfile, input_shape: tuple[int, ...], *, sparse: bool,
                 engine_path: Path, timing_cache: Path | None = None, input_name: str = "input") -> Path:
    """Build and save ``engine_path`` for the target's batch sizes (one optimization profile)."""
    trt = require()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = has_qdq(onnx_path) and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgekdError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if not strongly_typed and target.precision.value in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if sparse:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    low, high = min(target.batch_sizes), max(target.batch_sizes)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (low, *input_shape), (high, *input_shape), (high, *input_shape))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgekdError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    write_bytes(engine_path, bytes(serialized))
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(cache.serialize()))
    return engine_path


class Engine:
    """A built engine ready to run batches (buffers on the GPU through PyTorch's CUDA tensors)."""

    def __init__(self, engine_path: Path, input_name: str = "input", output_name: str = "logits"):
        import torch

        trt = require()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = input_name, output_name
        self.stream = torch.cuda.Stream()

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        inputs = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).cuda()
        self.context.set_input_shape(self.input_name, tuple(inputs.shape))
        outputs = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device="cuda")
        self.context.set_tensor_address(self.input_name, inputs.data_ptr())
        self.context.set_tensor_address(self.output_name, outputs.data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return outputs.cpu().numpy()


def compare_with_onnxruntime(engine: Engine, onnx_path: Path, loader) -> dict:
    """Logits of the engine and of ONNX Runtime on the same images: agreement, and where they diverge.

    An int8 engine whose accuracy collapses while the ONNX model's does not is the most common
    int8 complaint; this names the images (by index) and classes where the two disagree.
    """
    from edgekd.runtime.onnxruntime import create_session, run_logits

    session = create_session(onnx_path)
    agree, seen, max_diff, diverging = 0, 0, 0.0, []
    for ort_logits, labels, images in run_logits(session, loader):
        trt_logits = engine.run(images.numpy())
        max_diff = max(max_diff, float(np.abs(trt_logits - ort_logits).max()))
        same = trt_logits.argmax(1) == ort_logits.argmax(1)
        diverging += [{"image": seen + int(i), "onnxruntime": int(ort_logits[i].argmax()),
                       "tensorrt": int(trt_logits[i].argmax()), "label": int(labels[i])} for i in np.flatnonzero(~same)]
        agree, seen = agree + int(same.sum()), seen + len(labels)
    return {"images": seen, "top1_agreement": agree / max(seen, 1), "max_abs_diff": max_diff,
            "first_divergences": diverging[:20]}
