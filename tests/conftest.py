import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.data import load_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))  # so `user_code` imports as a user's module


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's ~/.cache/edgekd from tests."""
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def fashion():
    return load_fashion_mnist()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `edgekd` command as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), **(env or {})}
    exe = Path(sys.executable).parent / "edgekd"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)
