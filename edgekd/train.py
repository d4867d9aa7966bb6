"""The one training loop every stage reuses: teacher training, distillation, recovery, QAT.

``fit(model, data, config)`` trains with SGD or AdamW under a cosine or one-cycle schedule,
shows a progress bar (loss, accuracy, images/s), checkpoints each epoch atomically, resumes
from that checkpoint, and stops with a clear error (last good checkpoint kept) if the loss
becomes NaN or infinite. What is minimized is an *objective*: cross-entropy by default, a
distillation loss when a stage passes one.

It runs on the configured device (``device``: auto, cpu, cuda, cuda:N; unset, the run's device,
:mod:`edgekd.device`): model, objective (a distillation teacher, regressors) and every batch
(cached teacher logits included) move there, and the model comes back to the device it came
on. On CUDA it trains under autocast (bfloat16 where the GPU has it, else float16 with a
gradient scaler) unless ``amp`` is off; ``compile`` wraps the model in ``torch.compile``. On the
CPU it trains in float32 exactly as before.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader

from edgekd import console, distributed
from edgekd import device as devices
from edgekd.atomic import atomic_path
from edgekd.data import Augment, DataBundle, make_loader
from edgekd.data.loader import set_epoch
from edgekd.errors import CheckpointError, TrainingDivergedError, UserFunctionError
from edgekd.judge import judge
from edgekd.metrics import Metric, resolve_metric
from edgekd.supervised import SupervisedLoss, as_supervised


class Optimizer(str, enum.Enum):
    SGD = "sgd"
    ADAMW = "adamw"


class Schedule(str, enum.Enum):
    COSINE = "cosine"
    ONECYCLE = "onecycle"


class AugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    crop_padding: int = Field(2, ge=0)
    hflip: bool = True


class TrainConfig(BaseModel):
    """How to train: optimizer, schedule, epochs and regularization."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Optimizer = Optimizer.SGD
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Schedule = Schedule.ONECYCLE
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: AugmentConfig | None = AugmentConfig()
    seed: int = 0
    channels_last: bool = True
    # Where and how fast, not what: left out of dumps and fingerprints (a cached teacher or a finished
    # stage is reused whichever device trained it).
    device: str | None = Field(None, pattern=devices.SPEC.pattern, exclude=True)  # None: the run's device
    amp: bool = Field(True, exclude=True)  # mixed precision on CUDA (the CPU always trains in float32)
    compile: bool = Field(False, exclude=True)  # torch.compile the model for training

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class Supervised(nn.Module):
    """The plain supervised objective: the user's ``loss(outputs, targets)``, else cross-entropy with optional
    label smoothing (:mod:`edgekd.supervised`)."""

    def __init__(self, loss: Callable | SupervisedLoss | None = None, *, label_smoothing: float = 0.0):
        super().__init__()
        self.supervised = as_supervised(loss, label_smoothing=label_smoothing)

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        outputs = model(images)
        return self.supervised(outputs, labels), outputs


class CrossEntropy(Supervised):
    """Cross-entropy with optional label smoothing (the default objective)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        self.label_smoothing = label_smoothing


@dataclass
class TrainResult:
    """What a training run achieved: accuracy on the selection split per epoch, and wall time."""

    accuracy: float
    seconds: float
    history: list[dict] = field(default_factory=list)
    report_accuracy: float | None = None  # on the report split, when the caller grades the result (``edgekd.train``)


def fit(model: nn.Module, data: DataBundle, config: TrainConfig, *, objective: nn.Module | None = None,
        checkpoint: Path | None = None, progress: bool = True, metric: str | Metric | Callable | None = None,
        loss: Callable | SupervisedLoss | None = None) -> TrainResult:
    """Train ``model`` in place on ``data.train``; score it on ``data.selection`` after each epoch.

    With ``checkpoint`` set, state is saved there after every epoch and a matching
    checkpoint found there is resumed from (a checkpoint of another configuration is an error).
    ``metric`` scores it (default top-1, :mod:`edgekd.metrics`); ``loss(outputs, targets)`` replaces
    cross-entropy when no ``objective`` is given (a distillation objective carries its own).
    """
    metric = resolve_metric(metric)
    objective = objective if objective is not None else Supervised(loss, label_smoothing=config.label_smoothing)
    device, home = devices.resolve(config.device), model_device(model)
    parallel = distributed.world_size() > 1 and distributed.can_send(model, objective)
    memory_format, train_loader, optimizer, scheduler = prepare(model, objective, data, config, sharded=parallel,
                                                                device=device)
    precision = Precision.for_training(device, config)
    selection_loader = make_loader(data.selection, data.info, batch_size=256, train=False)
    result = TrainResult(accuracy=float("nan"), seconds=0.0)
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        start_epoch = load_checkpoint(checkpoint, config, model, objective, optimizer, scheduler, result,
                                      scaler=precision.scaler)
        console.info(f"resuming training from {checkpoint} at epoch {start_epoch + 1}/{config.epochs}")
    if parallel:  # sent while everything is still on the CPU: each worker moves it to its own device
        distributed.share(distributed.TrainingJob(model, objective, data, config, start_epoch,
                                                  optimizer.state_dict(), scheduler.state_dict()))
    elif distributed.world_size() > 1:
        distributed.train_alone()
    place(model, objective, optimizer, device)
    trainer = trainer_for(model, config, device, parallel=parallel)
    for epoch in range(start_epoch, config.epochs):
        set_epoch(train_loader, config.seed, epoch)
        t0 = time.perf_counter()
        loss, train_acc, images = train_epoch(trainer, objective, train_loader, optimizer, scheduler,
                                              epoch=epoch, config=config, checkpoint=checkpoint,
                                              memory_format=memory_format, progress=progress, precision=precision)
        seconds = time.perf_counter() - t0
        selection_acc = judge(model, selection_loader, metric, device=device)
        result.history.append({"epoch": epoch + 1, "loss": loss, "train_accuracy": train_acc,
                               "selection_accuracy": selection_acc, "seconds": round(seconds, 2),
                               "images_per_second": round(images / seconds, 1)})
        result.accuracy, result.seconds = selection_acc, result.seconds + seconds
        if checkpoint is not None:  # saved before the epoch is announced: what is printed is on disk
            save_checkpoint(checkpoint, config, model, objective, optimizer, scheduler, result, epoch + 1,
                            scaler=precision.scaler)
        shown = "" if train_acc is None else f"train acc {train_acc:.4f}, "
        console.info(f"epoch {epoch + 1}/{config.epochs}: loss {loss:.4f}, {shown}"
                     f"selection {metric.name} {selection_acc:.4f}, {images / seconds:.0f} img/s")
    if config.epochs == 0 or math.isnan(result.accuracy):
        result.accuracy = judge(model, selection_loader, metric, device=device)
    place(model, objective, optimizer, home)
    model.to(memory_format=torch.contiguous_format)
    return result


@dataclass
class Precision:
    """Autocast dtype (None: float32) and the gradient scaler float16 needs, for one training."""

    device: torch.device
    dtype: torch.dtype | None = None
    scaler: "torch.amp.GradScaler | None" = None

    @classmethod
    def for_training(cls, device: torch.device, config: TrainConfig) -> "Precision":
        machine = devices.Machine.here() if device.type == "cuda" else devices.Machine(cuda_devices=0)
        dtype = devices.amp_dtype(device, bf16=machine.bf16, enabled=config.amp)
        scaler = torch.amp.GradScaler(device.type) if devices.needs_grad_scaler(dtype) else None
        return cls(device, dtype, scaler)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def place(model: nn.Module, objective: nn.Module, optimizer, device: torch.device) -> None:
    """Model, objective (teacher, regressors) and the optimizer's state on ``device``."""
    model.to(device)
    objective.to(device)
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


def trainer_for(model: nn.Module, config: TrainConfig, device: torch.device, *, parallel: bool) -> nn.Module:
    """What the objective calls: the model, under DDP when training with other processes, compiled if asked."""
    trainer = data_parallel(model, device) if parallel else model
    return torch.compile(trainer) if config.compile else trainer


def train_job(job: distributed.TrainingJob) -> None:
    """A worker's share of the leader's :func:`fit`: the same epochs on its shard of each batch, no output."""
    config, model, objective = job.config, job.model, job.objective
    device = devices.resolve(config.device)
    memory_format, train_loader, optimizer, scheduler = prepare(model, objective, job.data, config, sharded=True,
                                                                device=device)
    optimizer.load_state_dict(job.optimizer_state)
    scheduler.load_state_dict(job.scheduler_state)
    place(model, objective, optimizer, device)
    trainer = trainer_for(model, config, device, parallel=True)
    precision = Precision.for_training(device, config)
    for epoch in range(job.start_epoch, config.epochs):
        set_epoch(train_loader, config.seed, epoch)
        train_epoch(trainer, objective, train_loader, optimizer, scheduler, epoch=epoch, config=config,
                    checkpoint=None, memory_format=memory_format, progress=False, precision=precision)


def prepare(model: nn.Module, objective: nn.Module, data: DataBundle, config: TrainConfig, *, sharded: bool,
            device: torch.device):
    """Seed, memory format, training batches, optimizer and schedule: the same on the leader and every worker."""
    torch.manual_seed(config.seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    train_loader = training_loader(data, config, sharded=sharded, device=device)
    optimizer = make_optimizer(trainable(model, objective), config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=len(train_loader))
    return memory_format, train_loader, optimizer, scheduler


def training_loader(data: DataBundle, config: TrainConfig, *, sharded: bool,
                    device: torch.device | None = None) -> DataLoader:
    """Shuffled, augmented batches (made on ``device`` when it is a GPU); ``sharded``: each process takes its
    share of every global batch."""
    world = distributed.world_size() if sharded else 1
    augment = Augment(**config.augment.model_dump()) if config.augment else None
    return make_loader(data.train, data.info, batch_size=max(1, config.batch_size // world), train=True,
                       augment=augment, seed=config.seed, distributed=sharded, device=device)


def trainable(model: nn.Module, objective: nn.Module) -> list[nn.Parameter]:
    return [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel: gradients averaged across processes during backward (one GPU per process)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids,
                                   find_unused_parameters=True)  # block-wise objectives skip layers


def train_epoch(model, objective, loader: DataLoader, optimizer, scheduler, *, epoch: int, config: TrainConfig,
                checkpoint: Path | None, memory_format, progress: bool,
                precision: Precision | None = None) -> tuple[float, float, int]:
    """One pass over the training set; returns mean loss, training accuracy (top-1 of classifiers, else 0) and
    images seen.

    On a GPU the running sums stay on the device and are read back (a synchronization) every
    :data:`GPU_READ_EVERY` steps and at the end, so the CPU queues the next steps while the GPU works;
    on the CPU they are read every step.
    """
    model.train()
    objective.train()
    precision = precision or Precision(torch.device("cpu"))
    device, scaler = precision.device, precision.scaler
    tally = Tally(device)
    read_every, last_read = (1 if device.type == "cpu" else GPU_READ_EVERY), 0
    with console.progress_bar(f"epoch {epoch + 1}/{config.epochs}", total=len(loader), enabled=progress) as bar:
        for step, (images, labels, *extra) in enumerate(loader):
            if device.type != "cpu":
                images, labels, *extra = devices.to_device((images, labels, *extra), device, non_blocking=True)
            images = images.to(memory_format=memory_format)
            try:
                with devices.autocast(device, precision.dtype):
                    loss, logits = objective(model, images, labels, *extra)
            except UserFunctionError as exc:
                raise UserFunctionError(f"{exc} (training batch {step}, epoch {epoch + 1})") from exc
            tally.add(loss, logits, labels)
            if (step + 1) % read_every == 0 or step + 1 == len(loader):
                tally.check_finite(epoch=epoch, config=config, checkpoint=checkpoint)
                bar.update(advance=step + 1 - last_read, **tally.read())
                last_read = step + 1
            optimizer.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler else loss).backward()
            if distributed.world_size() > 1:
                distributed.average_gradients(objective.parameters())
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
    return tally.loss(), tally.accuracy(), tally.seen


GPU_READ_EVERY = 20  # steps between reads of the loss on a GPU (each read waits for the GPU to catch up)


class Tally:
    """Running loss, correct predictions and images of one epoch, summed where the batches are."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.finite = torch.ones((), device=device, dtype=torch.bool)
        self.first_bad = torch.zeros((), device=device)  # the first non-finite loss, and its step
        self.first_bad_step = torch.zeros((), device=device, dtype=torch.int64)
        self.steps = self.seen = self.counted = 0  # counted: images whose top-1 was scored (classification)
        self.t0 = time.perf_counter()

    def add(self, loss: torch.Tensor, logits, labels: torch.Tensor) -> None:
        n = len(labels)
        loss = loss.detach().float()
        self.loss_sum += loss * n
        first = self.finite & ~torch.isfinite(loss)
        self.first_bad = torch.where(first, loss, self.first_bad)
        self.first_bad_step = torch.where(first, self.steps, self.first_bad_step)
        self.finite &= torch.isfinite(loss)
        self.steps += 1
        if is_classification(logits, labels):  # not block-wise objectives (LIT: no logits) nor dense outputs
            self.correct += (logits.detach().argmax(1) == labels).sum()
            self.counted += n
        self.seen += n

    def check_finite(self, *, epoch: int, config: TrainConfig, checkpoint: Path | None) -> None:
        """Stop with a clear error (naming the last good checkpoint) once any loss so far is NaN or infinite."""
        if bool(self.finite):
            return
        where = f"; the last good checkpoint is {checkpoint}" if checkpoint and checkpoint.exists() else ""
        raise TrainingDivergedError(
            f"training diverged: loss became {self.first_bad.item()} at epoch {epoch + 1}, "
            f"step {self.first_bad_step.item() + 1}{where}; "
            f"lower the learning rate (now {config.lr}) or check the data for NaNs")

    def loss(self) -> float:
        return self.loss_sum.item() / max(self.seen, 1)

    def accuracy(self) -> float | None:
        """Training top-1 so far; None where no batch had class scores to count (dense outputs, LIT's blocks)."""
        return self.correct.item() / self.counted if self.counted else None

    def read(self) -> dict:
        """The progress bar's fields; ``acc`` is its text ("acc 0.912  ", or nothing without a top-1)."""
        accuracy = self.accuracy()
        return {"loss": self.loss(), "acc": "" if accuracy is None else f"acc {accuracy:.3f}  ",
                "ips": self.seen / (time.perf_counter() - self.t0)}


def is_classification(logits, labels: torch.Tensor) -> bool:
    """(N, C) scores against (N,) labels: what the progress bar's training accuracy is counted for."""
    return isinstance(logits, torch.Tensor) and logits.dim() == 2 and labels.dim() == 1


def accuracy(model: nn.Module, loader: DataLoader, *, device: torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` on every batch of ``loader``: :func:`edgekd.judge.judge` with ``top1``."""
    return judge(model, loader, "top1", device=device)


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer is Optimizer.ADAMW:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                           weight_decay=config.weight_decay)


ONECYCLE_MIN_STEPS = 8  # fewer steps leave torch's OneCycleLR a zero-length warm-up (it divides by zero)


def make_scheduler(optimizer, config: TrainConfig, *, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule is Schedule.ONECYCLE and total >= ONECYCLE_MIN_STEPS:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                   pct_start=0.25, anneal_strategy="linear")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


def save_checkpoint(path: Path, config: TrainConfig, model, objective, optimizer, scheduler,
                    result: TrainResult, epoch: int, *, scaler=None) -> None:
    state = {"config": config.fingerprint(), "epoch": epoch, "model": model.state_dict(),
             "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "history": json.dumps(result.history),
             "seconds": result.seconds, "rng": torch.get_rng_state()}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, config: TrainConfig, model, objective, optimizer, scheduler,
                    result: TrainResult, *, scaler=None) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"training checkpoint {path} is unreadable ({type(exc).__name__}); delete it to "
                              "start this training afresh") from None
    if state.get("config") != config.fingerprint():
        raise CheckpointError(f"training checkpoint {path} was made with other training settings; delete it "
                              "to start afresh, or restore the settings it was made with")
    model.load_state_dict(state["model"])
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    result.history = json.loads(state["history"])
    result.seconds = state["seconds"]
    result.accuracy = result.history[-1]["selection_accuracy"] if result.history else float("nan")
    return int(state["epoch"])
