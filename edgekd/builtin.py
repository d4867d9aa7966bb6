"""Where the shipped files live: ``targets/``, ``recipes/`` and ``weights/`` beside the package in a
source checkout or editable install, ``edgekd/_builtin/`` inside an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(kind: str) -> Path:
    """The folder of shipped ``targets``, ``recipes`` or ``weights``."""
    for folder in (_PACKAGE / "_builtin" / kind, _PACKAGE.parent / kind):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"edgekd's {kind}/ folder is missing from the installation; reinstall edgekd")


def descriptor_dir() -> Path:
    """The folder of the runtime descriptors: ``edgekd/runtime/*.yaml``, beside their backend modules."""
    return _PACKAGE / "runtime"


def builtin_names(kind: str) -> list[str]:
    return sorted(p.stem for p in builtin_dir(kind).glob("*.yaml"))
