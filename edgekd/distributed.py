"""Training on several processes or machines with torchrun: rank 0 leads, the others train with it.

``edgekd compress --nproc N`` (or ``torchrun ... -m edgekd.cli compress ...``) starts N copies of
the command. Rank 0, the *leader*, runs the recipe exactly as a single process would: it makes
every decision, measures, prints and writes every file. Each training it does (:func:`edgekd.train.fit`:
teacher, distillation, recovery, QAT) is sent to the other ranks as a :class:`TrainingJob` (model,
objective, data, settings, optimizer state), and all ranks then train it in lockstep under
DistributedDataParallel, each on its shard of every global batch. The other ranks keep nothing,
so a resumed run needs no per-rank state and machines need not share a filesystem.

Backends: gloo on CPU, NCCL on GPU (one process per GPU: each takes the GPU of its local rank,
:mod:`edgekd.device`). Processes on one machine split its cores between them.

At the end every rank leaves the process group together (:func:`finish`): a barrier, then
``destroy_process_group``, so the group's threads are joined while Python is fully alive, not torn
down during interpreter exit, where gloo could abort a process whose work was done.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from edgekd import console
from edgekd import device as devices
from edgekd.errors import DeviceError

STOP, LOCAL = "stop", "local"  # messages a worker may receive instead of a job


@dataclass
class TrainingJob:
    """Everything a worker needs to train the leader's model with it, from where the leader starts."""

    model: torch.nn.Module
    objective: torch.nn.Module
    data: Any  # DataBundle
    config: Any  # TrainConfig
    start_epoch: int
    optimizer_state: dict
    scheduler_state: dict


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_leader() -> bool:
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group torchrun described in the environment; False when not under torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        # torch.distributed.nn's functions take `group=group.WORLD` as a default argument, evaluated on
        # import. Imported after the group exists (DistributedDataParallel imports torch._dynamo, which
        # imports it), they would hold the group past destroy_process_group, until interpreter exit.
        import torch.distributed.nn  # noqa: F401
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        backend = choose_backend(devices.resolve(None), local, devices.Machine.here().cuda_devices)
        if backend == "nccl":
            torch.cuda.set_device(devices.resolve(None))  # one process per GPU: the local rank's
        dist.init_process_group(backend=backend)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // local))
    return True


def choose_backend(device: torch.device, local_processes: int, cuda_devices: int) -> str:
    """NCCL when the processes train on GPUs, one GPU each; gloo on the CPU. More processes than GPUs is an error."""
    if device.type != "cuda":
        return "gloo"
    if local_processes > cuda_devices:
        raise DeviceError(f"{local_processes} processes on this machine but {cuda_devices} CUDA GPU(s): NCCL needs "
                          f"one GPU per process; use --nproc {cuda_devices} (or --device cpu)")
    return "nccl"


def can_send(model: torch.nn.Module, objective: torch.nn.Module) -> bool:
    """Leader: whether this training can go to the workers (feature taps with closures cannot be pickled)."""
    try:
        pickle.dumps((model, objective))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        console.warn(f"this training cannot be sent to the other processes ({type(exc).__name__}: {exc}); "
                     "it runs on rank 0 alone")
        return False
    return True


def share(job: TrainingJob) -> None:
    """Leader: send ``job`` to the workers, which then train it with the leader."""
    dist.broadcast_object_list([pickle.dumps(job)], src=0)


def train_alone() -> None:
    """Leader: tell the workers this training is not theirs (they wait for the next one)."""
    dist.broadcast_object_list([LOCAL], src=0)


def serve(train: Callable[[TrainingJob], None]) -> None:
    """Worker: train every job the leader sends, until it says stop."""
    while True:
        message = [None]
        dist.broadcast_object_list(message, src=0)
        if message[0] == STOP:
            finish()
            return
        if message[0] != LOCAL:
            train(pickle.loads(message[0]))


@contextlib.contextmanager
def leading() -> Iterator[None]:
    """Leader: run the pipeline, then release the workers (also when the pipeline fails)."""
    try:
        yield
    finally:
        if world_size() > 1:
            dist.broadcast_object_list([STOP], src=0)
            finish()


def finish() -> None:
    """Every rank, after its last collective: leave the process group together, and join its threads now.

    The barrier lets no rank close its connections while another still communicates; destroying the
    group then stops its threads here. A group still referenced elsewhere would keep them running
    into interpreter exit, where gloo's teardown can abort the process ("terminate called without an
    active exception") after its work is done: that is reported, so tests catch it on every run.
    """
    me = rank()
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()  # DistributedDataParallel wrappers left in reference cycles also hold the group
    deadline = time.monotonic() + 2.0  # joined threads leave /proc a moment after they end
    while (left := backend_threads()) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        console.warn(f"rank {me}: the process group is still referenced after destroy_process_group; its "
                     f"threads ({', '.join(left)}) will only stop during interpreter exit")


def backend_threads() -> list[str]:
    """Names of this process's gloo and NCCL threads (Linux; elsewhere none are found)."""
    names = []
    tasks = Path("/proc/self/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended while we looked
            names.append((task / "comm").read_text().strip())
    return sorted(name for name in names if "gloo" in name or "nccl" in name)


def average_gradients(parameters) -> None:
    """All-reduce the gradients of parameters DDP does not own (an objective's regressors)."""
    world = world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def launch(nproc: int, argv: list[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this machine; its exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "edgekd.cli", *argv]
    console.info(f"launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m edgekd.cli "
                 + " ".join(argv))
    return subprocess.call(command)


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (so the relaunched command does not relaunch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out
