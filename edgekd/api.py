"""The public Python API: what the CLI does, callable from a script or a notebook."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from edgekd import device as devices
from edgekd.data import DataBundle, DataSpec, load_data, make_loader
from edgekd.errors import ConfigError
from edgekd.metrics import resolve_metric
from edgekd.supervised import as_supervised
from edgekd.recipe import Recipe, load_recipe
from edgekd.search.space import Budget
from edgekd.stages import PUBLIC_STAGES
from edgekd.stages.base import Stage
from edgekd.targets import load_target
from edgekd.train import TrainConfig, TrainResult, accuracy, fit


def cache_dir() -> Path:
    """Where trained teachers are cached: ``$EDGEKD_CACHE`` or ``~/.cache/edgekd``."""
    return Path(os.environ.get("EDGEKD_CACHE") or Path.home() / ".cache" / "edgekd")


def default_run_dir(target: str, recipe: str) -> Path:
    """Where a run goes without ``out``: ``runs/TARGET-RECIPE``."""
    return Path("runs") / f"{target}-{recipe}"


def prepare_recipe(recipe: str | Path | Recipe, *, teacher: str | None = None, weights: str | None = None,
                   data: str | None = None, train_teacher: bool = False) -> Recipe:
    """Load a recipe and apply the command-line style overrides (teacher model, weights, data; ``train_teacher``:
    train the teacher even where edgekd ships weights for it)."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    changes = {k: v for k, v in (("model", teacher), ("weights", weights)) if v is not None}
    if train_teacher:
        changes["shipped"] = False
    if changes:
        recipe = recipe.with_stage("teacher", **changes)
    if data is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"source": data})})
    return recipe


@dataclass(frozen=True)
class CompressResult:
    """What :func:`compress` gives back.

    Attributes:
        model: the final PyTorch model (float; after a quantize stage the int8 model is ``onnx_path``).
        onnx_path: the shipped ONNX model (``OUT/model.onnx``), checked against ``model``.
        deploy_dir: what to copy onto the device (model, preprocessing.json, infer.py, build script).
        accuracy: the run's metric (``metric``: top-1 accuracy, 0–1, unless another was given) of ``onnx_path``
            on the report split (``val``, or ``test`` when given), with ONNX Runtime, read once every choice was
            made on the selection split.
        report: the report as data (also ``OUT/report.json``, ``.md``, ``.html``).
        out_dir: the run folder.
        metric: the name of the metric behind ``accuracy`` (``top1``, ``miou``, ``mse``, or your callable's).
    """

    model: nn.Module
    onnx_path: Path | None
    deploy_dir: Path | None
    accuracy: float
    report: dict
    out_dir: Path
    metric: str = "top1"


def compress(model: nn.Module | str | None = None, train: Any = None, val: Any = None, *, test: Any = None,
             target: str = "host",
             stages: Sequence[Stage] | None = None, recipe: str | Path | Recipe | None = None,
             out: str | Path | None = None, preprocessing: dict | None = None, weights: str | None = None,
             resume: bool = False, overwrite: bool = False, trust_checkpoint: bool = False,
             progress: bool = True, device: str | None = None, budget: Budget | None = None,
             metric: str | Callable | None = None, loss: Callable | None = None) -> CompressResult:
    """Compress ``model`` for ``target``: run the stages, write the run folder, return the results.

    Args:
        model: the trained model to start from: an ``nn.Module`` (used with its weights as they are),
            a zoo name or ``package.module:factory`` (default: the recipe's teacher).
        train: training data: a ``DataLoader`` or ``Dataset`` of ``(image, label)``, or a data source
            (``fashion-mnist``, a folder, ``package.module:function``); default: the recipe's.
        val: validation data like ``train`` (objects only): it grades the result (the report split), while a
            seeded 10% of ``train`` is held out to make every choice on (the selection split). None: both are
            held out of ``train``.
        test: test data like ``train``, with ``val``: then ``val`` makes the choices, ``test`` grades the result
            and all of ``train`` trains.
        target: a profile name from ``targets/`` (``edgekd targets``) or a profile YAML path.
        stages: stage objects, e.g. ``[edgekd.Distill(student="cnn-small"), edgekd.Quantize()]``;
            ``Export`` and ``Benchmark`` are appended when missing. Default: the default recipe's chain.
        recipe: instead of ``stages``: ``default``, ``fast``, ... or a recipe YAML path or :class:`Recipe`.
        out: the run folder (default ``runs/TARGET-RECIPE``).
        preprocessing: ``{'mean': [...], 'std': [...], 'scale': 1/255}``, how raw pixels became your
            loaders' tensors, recorded for ``deploy/`` (edgekd cannot know it from the tensors).
        weights: weights for a named ``model`` (safetensors, or a state_dict read with ``weights_only``).
        resume: continue the run in ``out``, skipping stages whose outputs are intact.
        overwrite: replace a run already in ``out``.
        trust_checkpoint: allow full unpickling of ``weights`` (only for files you trust).
        device: where every training and scoring runs: ``auto`` (CUDA when there is a GPU; the default),
            ``cpu``, ``cuda`` or ``cuda:N``; a recipe's ``train: {device: ...}`` overrides it for one training.
        budget: search for the stages instead of running the recipe's:
            ``edgekd.Budget(max_accuracy_drop=1.0)`` (the fastest model within 1 point) or
            ``edgekd.Budget(latency_ms=2.0, batch=1)`` (the most accurate within 2 ms); the recipe then
            gives the teacher, the data and the distill student (see :func:`edgekd.search.run.compress_within_budget`);
            ``max_accuracy_drop`` is then in points of ``metric``.
        metric: what judges every model, on PyTorch and ONNX outputs alike: ``top1`` (default), ``miou``, ``mse``
            (reported as −MSE), or ``metric(outputs_batches, targets_batches) -> float``, higher is better
            (:mod:`edgekd.metrics`). Accuracy control, every stage's checks, the search and the report use it.
        loss: ``loss(outputs, targets) -> scalar tensor``, replacing cross-entropy in every training and recovery
            (needed for a model that returns a tuple or dict of tensors).
    """
    with devices.use(device):  # checked first: CUDA asked for where there is none is one error, nothing written
        return compress_on_device(model, train, val, test=test, target=target, stages=stages, recipe=recipe, out=out,
                                  preprocessing=preprocessing, weights=weights, resume=resume, overwrite=overwrite,
                                  trust_checkpoint=trust_checkpoint, progress=progress, budget=budget,
                                  judging=(resolve_metric(metric), as_supervised(loss)))


def compress_on_device(model, train, val, *, test=None, target, stages, recipe, out, preprocessing, weights, resume, overwrite,
                       trust_checkpoint, progress, budget=None, judging=None) -> CompressResult:
    """:func:`compress` once the run's device is set; ``judging``: the run's (metric, supervised loss)."""
    from edgekd.pipeline import run_pipeline

    metric, loss = judging or (resolve_metric(None), as_supervised(None))
    profile = load_target(target)
    check_model_argument(model)
    plan = plan_recipe(model, stages=stages, recipe=recipe, weights=weights,
                       data=train if isinstance(train, str) else None)
    data = user_data(train, val, test, model=model, preprocessing=preprocessing)
    out = Path(out) if out is not None else default_run_dir(profile.name, "search" if budget else plan.name)
    user_model = model if isinstance(model, nn.Module) else None
    if budget is not None:
        from edgekd.search.run import compress_within_budget

        run = compress_within_budget(plan, profile, out, budget, data=data, user_model=user_model, resume=resume,
                                     overwrite=overwrite, cache_dir=cache_dir(), trust_checkpoint=trust_checkpoint,
                                     progress=progress, metric=metric, loss=loss)
    else:
        run = run_pipeline(plan, profile, out, data=data, user_model=user_model, resume=resume, overwrite=overwrite,
                           cache_dir=cache_dir(), trust_checkpoint=trust_checkpoint, progress=progress, metric=metric,
                           loss=loss)
    onnx_path = run.handoff.onnx.path if run.handoff.onnx is not None else None
    deploy = out / "deploy" if onnx_path is not None else None
    return CompressResult(model=run.handoff.model, onnx_path=onnx_path, deploy_dir=deploy,
                          accuracy=run.report["summary"]["accuracy"], report=run.report, out_dir=out,
                          metric=metric.name)


def check_model_argument(model: Any) -> None:
    if model is not None and not isinstance(model, (nn.Module, str)):
        raise ConfigError(f"model must be a torch nn.Module, a zoo name or package.module:factory, not "
                          f"{type(model).__name__}")


def plan_recipe(model: nn.Module | str | None, *, stages: Sequence[Stage] | None, recipe: str | Path | Recipe | None,
                weights: str | None, data: str | None) -> Recipe:
    """The recipe to run: the given stages (after a teacher stage for ``model``) or a named recipe."""
    if stages is not None and recipe is not None:
        raise ConfigError("give stages or recipe, not both")
    plan = custom_recipe(stages, model_given=model is not None) if stages is not None else recipe or "default"
    plan = prepare_recipe(plan, teacher=model if isinstance(model, str) else None, weights=weights, data=data)
    return plan.with_stage("teacher", model=None) if isinstance(model, nn.Module) else plan


def custom_recipe(stages: Sequence[Stage], *, model_given: bool = False) -> Recipe:
    """The user's stages, after the default teacher stage when they need a model (the user's ``model`` enters the run
    through it); export and benchmark appended if missing. A teacher-free distill stage with a named student
    starts a run by itself: no teacher is trained for it."""
    from edgekd.stages import STAGES

    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
        raise ConfigError("stages must be a list of stage objects, e.g. [edgekd.Prune(reduction=0.5)]")
    for item in stages:
        if not isinstance(item, Stage):
            raise ConfigError(f"stages must be stage objects ({', '.join(stage_names())}), not "
                              f"{type(item).__name__} {item!r:.60}")
    chain = list(stages)
    needs_model = model_given or not chain or "model" in chain[0].needs
    if needs_model and not any(s.stage == "teacher" for s in chain):
        chain.insert(0, next(s for s in load_recipe("default").stages if s.stage == "teacher"))
    for name in ("export", "benchmark"):
        if not any(s.stage == name for s in chain):
            chain.append(STAGES[name]())
    try:
        return Recipe(name="custom", stages=tuple(chain))
    except ValidationError as exc:
        raise ConfigError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def stage_names() -> list[str]:
    return [f"edgekd.{name}" for name in PUBLIC_STAGES]


def user_data(train: Any, val: Any, test: Any = None, *, model: nn.Module | str | None,
              preprocessing: dict | None) -> DataBundle | None:
    """The user's data objects as a :class:`DataBundle`; None when the recipe's data spec (or a source name) is used."""
    if train is None or isinstance(train, str):
        if val is not None or test is not None:
            raise ConfigError("val and test go with your own training data objects: pass train as a DataLoader or "
                              "Dataset")
        if preprocessing is not None:
            raise ConfigError("preprocessing describes your own DataLoaders; edgekd knows its own data's")
        return None
    if isinstance(train, DataBundle):
        return train
    from edgekd.data.objects import bundle_from_objects

    return bundle_from_objects(train, val, test, num_classes=output_width(model, train), preprocessing=preprocessing)


def output_width(model: nn.Module | str | None, train: Any) -> int | None:
    """How many classes an ``nn.Module`` predicts, from one training image (None if it cannot tell)."""
    if not isinstance(model, nn.Module):
        return None
    from edgekd.data.objects import dataset_of, first_item

    image, _ = first_item(dataset_of(train, "training"))
    device = next(model.parameters(), torch.empty(0)).device  # a model the user left on the GPU
    was_training = model.training
    try:
        with torch.inference_mode():
            logits = model.eval()(image[None].float().to(device))
    except Exception:  # the teacher stage's own check explains a model that does not fit the data
        return None
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor):
        return None
    return int(logits.shape[1]) if logits.dim() in (2, 4) else None  # a classifier's scores, a segmenter's maps


def train(model: nn.Module | str, data: DataBundle | DataSpec | None = None, *, config: TrainConfig = TrainConfig(),
          out: str | Path | None = None, device: str | None = None) -> tuple[nn.Module, TrainResult]:
    """Train a model (an ``nn.Module``, a zoo name or ``pkg.module:factory``) with the shared loop.

    It trains on the data's training split, is scored on its selection split after each epoch
    (``result.accuracy``), and graded once on the report split at the end (``result.report_accuracy``).

    With ``out``, the weights are saved there as safetensors, and an interrupted training
    resumes from ``OUT.ckpt`` (removed once training finishes). ``device`` as for :func:`compress`.
    """
    with devices.use(device):
        return train_on_device(model, data, config=config, out=out)


def train_on_device(model, data, *, config: TrainConfig, out) -> tuple[nn.Module, TrainResult]:
    from edgekd.models.loading import build_model, save_weights

    bundle = data if isinstance(data, DataBundle) else load_data(data or DataSpec())
    net = build_model(model, bundle.info) if isinstance(model, str) else model
    checkpoint = Path(out).with_suffix(".ckpt") if out is not None else None
    result = fit(net, bundle, config, checkpoint=checkpoint)
    result.report_accuracy = accuracy(net, make_loader(bundle.report.unsealed(), bundle.info, batch_size=256,
                                                       train=False))  # graded once, after training
    if out is not None:
        save_weights(net, out)
        checkpoint.unlink(missing_ok=True)
    return net, result
