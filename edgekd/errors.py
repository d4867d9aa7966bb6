"""Errors a user can cause and fix. The CLI prints their message as one line and exits 1.

Every message says what is wrong and what to do about it. Anything that is not an
``EdgekdError`` is a bug in edgekd and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgekdError(Exception):
    """Base class: a mistake in the user's input, environment or data, with its fix."""


class UnknownNameError(EdgekdError, KeyError):
    """A name (model, target, stage, runtime, recipe) that no registry knows."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        plural = kind + ("es" if kind.endswith("s") else "s")
        super().__init__(f"unknown {kind} '{name}'.{hint} Known {plural}: {', '.join(known)}")
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataError(EdgekdError):
    """Missing, truncated or corrupt data, or data that does not fit the model."""


class CheckpointError(EdgekdError):
    """A weights file that is missing, unreadable, unsafe or does not fit the model."""


class ConfigError(EdgekdError):
    """A recipe or target profile that does not validate (message carries file and line)."""


class DeviceError(EdgekdError):
    """A device that is not there (CUDA asked for on a machine without it, a GPU index out of range)."""


class TrainingDivergedError(EdgekdError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class PruneError(EdgekdError):
    """Pruning cannot keep this model consistent, or cannot reach the requested size."""


class FactorizeError(EdgekdError):
    """Low-rank factorization cannot reach the requested target on this model."""


class QuantizeError(EdgekdError):
    """int8 cannot meet the accuracy budget with the chosen method, or the model cannot be quantized."""


class ExportError(EdgekdError):
    """Export failed, or the exported model does not reproduce the PyTorch model."""


class SearchError(EdgekdError):
    """A budget-driven search found nothing within the budget (the message names the nearest)."""


class OutputError(EdgekdError):
    """The output directory cannot be written, or holds a run that does not match."""


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` known names closest to ``name`` (for "did you mean" hints)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.3)


class UserFunctionError(EdgekdError):
    """The user's metric or loss raised, returned something that is not a finite number, or the model's outputs
    changed structure between PyTorch and ONNX; the message names the callable and the batch."""
