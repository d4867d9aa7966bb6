"""Where tensors live: the device is chosen once per run and honoured by every training and scoring loop.

``device: auto | cpu | cuda | cuda:N`` (in a recipe's ``train`` settings, ``edgekd.compress(device=...)``
or ``--device``). ``auto`` is CUDA when PyTorch sees a GPU, else the CPU; under torchrun each process
takes the GPU of its local rank. Asking for CUDA where there is none is one :class:`DeviceError`.

The resolution and the mixed-precision choice are pure functions of what the machine has
(:class:`Machine`), so they are tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.errors import DeviceError

SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
SPEC_HINT = "use auto, cpu, cuda or cuda:N"

RUN_DEVICE: contextvars.ContextVar[str] = contextvars.ContextVar("edgekd_device", default="auto")


@dataclass(frozen=True)
class Machine:
    """What the device choice depends on: GPUs PyTorch sees, and this process's torchrun local rank."""

    cuda_devices: int
    local_rank: int = 0
    bf16: bool = False  # whether the GPU computes in bfloat16 (Ampere and later)

    @classmethod
    def here(cls) -> "Machine":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        bf16 = bool(count) and torch.cuda.is_bf16_supported()
        return cls(cuda_devices=count, local_rank=int(os.environ.get("LOCAL_RANK", "0")), bf16=bf16)


def check_spec(spec: str) -> str:
    """``spec`` if it names a device kind edgekd knows (for settings validation), else a DeviceError."""
    if not isinstance(spec, str) or not SPEC.match(spec.strip().lower()):
        raise DeviceError(f"unknown device '{spec}'; {SPEC_HINT}")
    return spec.strip().lower()


def resolve(spec: str | None = None, machine: Machine | None = None) -> torch.device:
    """The ``torch.device`` a spec means on ``machine`` (default: this one); None is the run's device."""
    spec = check_spec(spec if spec is not None else RUN_DEVICE.get())
    machine = machine or Machine.here()
    if spec == "cpu" or (spec == "auto" and machine.cuda_devices == 0):
        return torch.device("cpu")
    if machine.cuda_devices == 0:
        raise DeviceError(f"device '{spec}' asked for, but PyTorch sees no CUDA GPU here (torch "
                          f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use device auto or cpu, "
                          "or install a CUDA build of PyTorch")
    index = int(spec.split(":")[1]) if ":" in spec else machine.local_rank % machine.cuda_devices
    if index >= machine.cuda_devices:
        raise DeviceError(f"device '{spec}' asked for, but this machine has {machine.cuda_devices} CUDA GPU(s) "
                          f"(cuda:0 to cuda:{machine.cuda_devices - 1})")
    return torch.device("cuda", index)


def current() -> torch.device:
    """The run's device (``auto`` unless :func:`use` set another)."""
    return resolve(None)


@contextlib.contextmanager
def use(spec: str | None) -> Iterator[torch.device]:
    """Make ``spec`` the run's device inside the block (None keeps the current one); checked on entry."""
    if spec is None:
        yield current()
        return
    device = resolve(spec)
    token = RUN_DEVICE.set(check_spec(spec))
    try:
        yield device
    finally:
        RUN_DEVICE.reset(token)


def home(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters are on (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextlib.contextmanager
def placed(model: nn.Module, device: torch.device | None = None) -> Iterator[torch.device]:
    """``model`` on ``device`` (default: the run's) inside the block, back where it came from after.

    Parameters move in place, gradients with them, so references to the model's layers stay valid.
    """
    device = device or current()
    origin = home(model)
    model.to(device)
    try:
        yield device
    finally:
        model.to(origin)


def amp_dtype(device: torch.device, *, bf16: bool, enabled: bool = True) -> torch.dtype | None:
    """Autocast dtype for training on ``device``: bfloat16 where the GPU has it, else float16; None on the CPU.

    The CPU trains in float32 as it always has (its results stay what they were).
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if bf16 else torch.float16


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none."""
    return dtype is torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(tensors, device: torch.device, *, non_blocking: bool = False):
    """Every tensor of a batch (a tuple or list of tensors) on ``device``."""
    return [t.to(device, non_blocking=non_blocking) if isinstance(t, torch.Tensor) else t for t in tensors]
