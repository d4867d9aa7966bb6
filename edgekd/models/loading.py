"""Models by name or import path, and weights from files that are safe to load."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import torch
from torch import nn

from edgekd.data.datasets import DataInfo
from edgekd.errors import CheckpointError, DataError, EdgekdError
from edgekd.imports import import_object, is_import_path
from edgekd.models import MODELS, create_model

TRUST_HINT = ("re-save it with torch.save(model.state_dict(), path) or as .safetensors, or pass "
              "--trust-checkpoint if you trust whoever made the file (unpickling can run any code)")


def build_model(spec: str, info: DataInfo) -> nn.Module:
    """A fresh model for the data: a zoo name, or ``pkg.module:factory`` called with what it accepts.

    The factory may take ``num_classes``, ``in_channels`` and ``input_size`` (each passed only
    if its signature names it), e.g. ``torchvision.models:resnet18``.
    """
    if spec in MODELS or not is_import_path(spec):
        if info.num_classes < 1:
            raise DataError(f"cannot build zoo model '{spec}' for this data: its targets are tensors (masks, boxes), "
                            "so the number of classes the model should output is unknown; give the dataset a "
                            "'classes' attribute, or name your own model (package.module:factory)")
        return create_model(spec, in_channels=info.channels, num_classes=info.num_classes,
                            input_size=info.image_size)
    factory = import_object(spec, what="model factory")
    offered = {"num_classes": info.num_classes, "in_channels": info.channels, "input_size": info.image_size}
    try:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in offered.items() if k in params or (takes_any and k == "num_classes")}
    except (TypeError, ValueError):
        kwargs = {}
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise EdgekdError(f"model factory '{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: str | Path, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: ``.safetensors``, or a torch file read with ``weights_only=True``.

    Accepts a bare state_dict or a training checkpoint holding one under ``state_dict``/``model``,
    and strips DistributedDataParallel's ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(f"{path} holds Python objects beyond tensors and would need full unpickling; "
                                  f"{TRUST_HINT}") from None
        raise CheckpointError(f"{path} is not a readable checkpoint ({str(exc).splitlines()[0]}); "
                              "is it corrupt or truncated?") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, zip errors... for broken files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'empty'}); is it corrupt or truncated?") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors; save one with torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s state_dict as safetensors, atomically (the format ``load_weights`` prefers)."""
    from safetensors.torch import save_file

    from edgekd.atomic import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)


def load_weights(model: nn.Module, path: str | Path, *, trust: bool = False) -> nn.Module:
    """Load a weights file into ``model``; a file of another model names the keys that differ."""
    state = read_state_dict(path, trust=trust)
    check_fits(model, state, path)
    model.load_state_dict(state)
    return model


def check_fits(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys ({preview(missing)})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys ({preview(unexpected)})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shapes differ (e.g. {k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)})")
    raise CheckpointError(f"{path} does not fit the model {type(model).__name__}: {'; '.join(parts)}; "
                          "is it the checkpoint of another model or another number of classes?")


def preview(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
