"""The one judging path: a metric over a loader, computed the same way on PyTorch and ONNX outputs.

``judge(model_or_onnx, loader, metric)`` runs every batch of ``loader`` through an ``nn.Module`` (float32,
on the run's device) or an ONNX model (a path, serialized bytes or an ``onnx.ModelProto``, in ONNX
Runtime), turns the outputs into the structure the PyTorch model returns (a tensor, a tuple or a dict
of CPU float32 tensors), and hands them with the targets to the metric (:mod:`edgekd.metrics`).

Output structure and ONNX names (:func:`output_names`, used by the exporter): one tensor is ``logits``;
a tuple's items are ``output_0``, ``output_1``, ...; a dict's items are named by their keys (a dict whose
keys are ``logits`` alone or ``output_N`` reads back as a tensor or a tuple).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from edgekd import device as devices
from edgekd.errors import UserFunctionError
from edgekd.metrics import Metric, resolve_metric

SINGLE = "logits"
TUPLE_NAME = re.compile(r"output_(\d+)")


def flatten_outputs(outputs: Any) -> tuple[tuple[str, ...], list[torch.Tensor]]:
    """(names, tensors) of what a model returned: a tensor, a tuple/list or a dict of tensors."""
    if isinstance(outputs, torch.Tensor):
        return (SINGLE,), [outputs]
    if isinstance(outputs, (tuple, list)) and outputs and all(isinstance(t, torch.Tensor) for t in outputs):
        return tuple(f"output_{i}" for i in range(len(outputs))), list(outputs)
    if isinstance(outputs, dict) and outputs and all(isinstance(t, torch.Tensor) for t in outputs.values()):
        return tuple(str(k) for k in outputs), list(outputs.values())
    raise UserFunctionError(f"the model returned {type(outputs).__name__}; edgekd takes a model that returns a tensor, "
                            "a tuple of tensors or a dict of tensors")


def rebuild(names: tuple[str, ...], tensors: list[torch.Tensor]) -> Any:
    """The structure :func:`flatten_outputs` took apart, from the names (ONNX output names)."""
    if names == (SINGLE,):
        return tensors[0]
    if all(TUPLE_NAME.fullmatch(n) for n in names) and [int(TUPLE_NAME.fullmatch(n)[1]) for n in names] == \
            list(range(len(names))):
        return tuple(tensors)
    return dict(zip(names, tensors))


def output_names(model: nn.Module, example: torch.Tensor) -> tuple[str, ...]:
    """The ONNX output names of ``model``'s outputs for ``example`` (one forward pass)."""
    with torch.inference_mode():
        return flatten_outputs(model(example))[0]


def output_shapes(outputs: Any) -> dict[str, tuple[int, ...]]:
    """Each output's shape by its name (what pruning and factorization must not change)."""
    names, tensors = flatten_outputs(outputs)
    return {name: tuple(t.shape) for name, t in zip(names, tensors)}


def map_outputs(outputs: Any, fn) -> Any:
    names, tensors = flatten_outputs(outputs)
    return rebuild(names, [fn(t) for t in tensors])


def first_tensor(outputs: Any) -> torch.Tensor:
    """The first output tensor (the class scores of a classifier or a segmenter, the first head otherwise)."""
    return flatten_outputs(outputs)[1][0]


def is_onnx(model: Any) -> bool:
    return isinstance(model, (str, Path, bytes)) or hasattr(model, "SerializeToString")


def torch_batches(model: nn.Module, loader: DataLoader, device: torch.device) -> Iterator[tuple[Any, Any, Any]]:
    """(outputs on the CPU in float32, targets, images) per batch; the caller has put ``model`` on ``device``."""
    with torch.inference_mode():
        for images, targets, *_ in loader:
            outputs = model(images.to(device, non_blocking=True))
            yield map_outputs(outputs, lambda t: t.float().cpu()), targets, images


def onnx_batches(model: Any, loader: DataLoader, *, threads: int | None = None) -> Iterator[tuple[Any, Any, Any]]:
    """(outputs rebuilt as PyTorch would return them, targets, images) per batch, from ONNX Runtime."""
    from edgekd.runtime.onnxruntime import create_session

    source = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    session = create_session(source, threads=threads)
    input_name = session.get_inputs()[0].name
    names = tuple(o.name for o in session.get_outputs())
    for images, targets, *_ in loader:
        arrays = session.run(None, {input_name: images.numpy()})
        yield rebuild(names, [torch.from_numpy(a).float() for a in arrays]), targets, images


def judge(model: nn.Module | str | Path | bytes | Any, loader: DataLoader, metric: str | Metric | Any = None, *,
          device: torch.device | None = None, threads: int | None = None) -> float:
    """``metric`` (default ``top1``) of ``model`` over every batch of ``loader``; higher is better.

    Args:
        model: an ``nn.Module`` (run in eval mode, float32, on ``device``, default the run's; left in eval
            mode where it came from) or an ONNX model (path, bytes, ``onnx.ModelProto``) run in ONNX Runtime.
        loader: batches of (images, targets, ...).
        metric: a built-in name (``top1``, ``miou``, ``mse``), a callable, or a :class:`Metric`.
        threads: ONNX Runtime intra-op threads (ONNX models only).
    """
    return judge_pass(model, loader, metric, device=device, threads=threads).value()


def judge_pass(model: nn.Module | str | Path | bytes | Any, loader: DataLoader, metric: str | Metric | Any = None, *,
               device: torch.device | None = None, threads: int | None = None):
    """:func:`judge`'s pass itself: the metric's accumulator after every batch (its ``value()`` and, where
    the metric is a mean over items, its ``items()``)."""
    metric = resolve_metric(metric)
    accumulator = metric.accumulator()
    if is_onnx(model):
        for index, (outputs, targets, _) in enumerate(onnx_batches(model, loader, threads=threads)):
            accumulator.add(outputs, targets, index)
        return accumulator
    # Moved outside inference mode: parameters copied to another device inside it would become inference
    # tensors, which autograd (training, torch-pruning's tracing) then refuses.
    model.eval()
    with devices.placed(model, device or devices.current()) as where:
        for index, (outputs, targets, _) in enumerate(torch_batches(model, loader, where)):
            accumulator.add(outputs, targets, index)
    return accumulator
    # Moved outside inference mode: parameters copied to another device inside it would become inference
    # tensors, which autograd (training, torch-pruning's tracing) then refuses.
    model.eval()
    with devices.placed(model, device or devices.current()) as where:
        for index, (outputs, targets, _) in enumerate(torch_batches(model, loader, where)):
            accumulator.add(outputs, targets, index)
    return accumulator.value()
