"""The public Python API: what the CLI does, callable from a script or a notebook."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from edgekd.data import DataBundle, DataSpec, load_data
from edgekd.recipe import Recipe, load_recipe
from edgekd.targets import load_target
from edgekd.train import TrainConfig, TrainResult, fit


def cache_dir() -> Path:
    """Where trained teachers are cached: ``$EDGEKD_CACHE`` or ``~/.cache/edgekd``."""
    return Path(os.environ.get("EDGEKD_CACHE") or Path.home() / ".cache" / "edgekd")


def default_run_dir(target: str, recipe: str) -> Path:
    """Where a run goes without ``out``: ``runs/TARGET-RECIPE``."""
    return Path("runs") / f"{target}-{recipe}"


def prepare_recipe(recipe: str | Path | Recipe, *, teacher: str | None = None, weights: str | None = None,
                   data: str | None = None) -> Recipe:
    """Load a recipe and apply the command-line style overrides (teacher model, weights, data)."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    changes = {k: v for k, v in (("model", teacher), ("weights", weights)) if v is not None}
    if changes:
        recipe = recipe.with_stage("teacher", **changes)
    if data is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"source": data})})
    return recipe


def compress(teacher: str | None = None, data: str | None = None, *, target: str = "host",
             recipe: str | Path | Recipe = "default", out: str | Path | None = None, weights: str | None = None,
             resume: bool = False, overwrite: bool = False, trust_checkpoint: bool = False) -> dict:
    """Run a recipe for a target profile and return the report (also written to ``out``).

    Args:
        teacher: zoo model name or ``package.module:factory`` (default: the recipe's).
        data: ``fashion-mnist``, a folder, or ``package.module:function`` (default: the recipe's).
        target: a profile name from ``targets/`` or a profile YAML path.
        recipe: ``default``, ``fast``, a YAML path, or a :class:`Recipe`.
        out: the run folder (default ``runs/TARGET-RECIPE``).
        weights: the teacher's weights (safetensors, or a state_dict read with ``weights_only``).
        resume: continue the run in ``out``, skipping stages whose outputs are intact.
        overwrite: replace a run already in ``out``.
        trust_checkpoint: allow full unpickling of ``weights`` (only for files you trust).
    """
    from edgekd.pipeline import run_pipeline

    profile = load_target(target)
    plan = prepare_recipe(recipe, teacher=teacher, weights=weights, data=data)
    out = Path(out) if out is not None else default_run_dir(profile.name, plan.name)
    return run_pipeline(plan, profile, out, resume=resume, overwrite=overwrite, cache_dir=cache_dir(),
                        trust_checkpoint=trust_checkpoint)


def train(model: nn.Module | str, data: DataBundle | DataSpec | None = None, *, config: TrainConfig = TrainConfig(),
          out: str | Path | None = None) -> tuple[nn.Module, TrainResult]:
    """Train a model (an ``nn.Module``, a zoo name or ``pkg.module:factory``) with the shared loop.

    With ``out``, the weights are saved there as safetensors, and an interrupted training
    resumes from ``OUT.ckpt`` (removed once training finishes).
    """
    from edgekd.models.loading import build_model, save_weights

    bundle = data if isinstance(data, DataBundle) else load_data(data or DataSpec())
    net = build_model(model, bundle.info) if isinstance(model, str) else model
    checkpoint = Path(out).with_suffix(".ckpt") if out is not None else None
    result = fit(net, bundle, config, checkpoint=checkpoint)
    if out is not None:
        save_weights(net, out)
        checkpoint.unlink(missing_ok=True)
    return net, result
