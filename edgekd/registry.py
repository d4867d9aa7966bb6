"""Adding to edgekd's registries from user code: a loss, a stage, a zoo model or a runtime, by name.

Each registry stays one plain dict in the module that owns it, holding the built-ins where a reader
looks for them (``LOSSES`` in :mod:`edgekd.distill`, ``STAGES`` in :mod:`edgekd.stages`, ``MODELS`` in
:mod:`edgekd.models`, ``RUNTIMES`` in :mod:`edgekd.runtime`). The decorators beside them
(``edgekd.register_loss``, ``register_stage``, ``register_model``, ``register_runtime``) add a user's
entry to the same dict, so a loss written in a notebook is named in ``Distill(losses=[...])`` or a recipe
like any built-in. What a registry needs to know about an entry (does a loss need a teacher, is it a
training phase, what a stage needs before it) are the entry's own class attributes, never its name.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from edgekd.errors import ConfigError


def register(registry: dict, kind: str, name: str, entry: Any, *, override: bool = False) -> None:
    """Add ``entry`` to ``registry`` under ``name``; a name already taken by another entry is a ConfigError
    unless ``override`` (re-registering the same entry, as a re-run notebook cell does, is allowed)."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ConfigError(f"a {kind} is registered under a non-empty name without surrounding spaces, not {name!r}")
    taken = registry.get(name)
    if taken is not None and not override and not same_entry(taken, entry):
        raise ConfigError(f"{kind} '{name}' is already registered ({describe(taken)}); choose another name, or "
                          f"pass override=True to replace it")
    registry[name] = entry


def same_entry(old: Any, new: Any) -> bool:
    """The same object, or the same class or function defined again (a notebook cell run twice)."""
    if old is new:
        return True
    if isinstance(old, partial) and isinstance(new, partial):  # register_model(name, partial(Net, width=16))
        return same_entry(old.func, new.func) and old.args == new.args and old.keywords == new.keywords
    qualified = lambda x: (getattr(x, "__module__", None), getattr(x, "__qualname__", None))  # noqa: E731
    return qualified(old) == qualified(new) and qualified(old) != (None, None)


def describe(entry: Any) -> str:
    """Where an entry comes from, for the duplicate-name message: a module path, or module.qualname."""
    if isinstance(entry, partial):
        return f"{describe(entry.func)} with {entry.keywords or entry.args}"
    if isinstance(entry, str):
        return entry
    return ".".join(p for p in (getattr(entry, "__module__", ""), getattr(entry, "__qualname__", "")) if p) \
        or repr(entry)
