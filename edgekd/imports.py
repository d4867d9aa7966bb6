"""Import a user's object by ``package.module:attribute``."""

from __future__ import annotations

import importlib
from typing import Any

from edgekd.errors import EdgekdError


def is_import_path(spec: str) -> bool:
    return ":" in spec and not spec.startswith(("/", ".")) and "/" not in spec.split(":", 1)[0]


def import_object(spec: str, *, what: str) -> Any:
    """Import ``pkg.module:attr`` (attr may be dotted); errors name the part that failed."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise EdgekdError(f"{what} '{spec}' is not of the form package.module:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise EdgekdError(f"cannot import module '{module_name}' for {what} '{spec}': {exc}; "
                          "is it installed or on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EdgekdError(f"module '{module_name}' has no '{attr}' (for {what} '{spec}')")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EdgekdError(f"{what} '{spec}' is not callable")
    return obj
