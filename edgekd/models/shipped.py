"""Trained weights that ship with edgekd, used instead of training when a run asks for exactly them.

``weights/shipped.yaml`` lists each file with what made it: the zoo model, the fingerprint of the
data it was trained on (train and selection splits, :meth:`edgekd.data.DataBundle.fingerprint`),
the fingerprint of its training settings (:meth:`edgekd.train.TrainConfig.fingerprint`), the
script that trained it and its sha256. A teacher stage whose model, data and settings give the
same three keys loads the file instead of training for minutes; the sha256 is checked first,
and a file that does not match (damaged, or a Git LFS pointer) is reported and not used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edgekd import console
from edgekd.atomic import write_text
from edgekd.builtin import builtin_dir
from edgekd.yamlschema import load_yaml, validate

MANIFEST = "shipped.yaml"


class ShippedWeights(BaseModel):
    """One shipped weights file and the three keys a run must match to use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    data: str = Field(description="DataBundle.fingerprint() of the training data (train + selection splits)")
    train: str = Field(description="TrainConfig.fingerprint() of the training settings")
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    made_by: str = Field(description="the script that trained it; rerunning it remakes the file and this entry")
    report_accuracy: float | None = Field(None, description="on the report split, read once after training")

    @property
    def key(self) -> tuple[str, str, str]:
        """What a run must match to use the file: model, data fingerprint, settings fingerprint."""
        return self.model, self.data, self.train


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teachers: list[ShippedWeights] = []


def weights_dir() -> Path:
    return builtin_dir("weights")


def load_manifest(folder: Path | None = None) -> Manifest:
    path = (folder or weights_dir()) / MANIFEST
    if not path.exists():
        return Manifest()
    data, lines = load_yaml(path)
    return validate(Manifest, data or {}, source=str(path), lines=lines)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_teacher(model: str, data: str, train: str, *, folder: Path | None = None) -> Path | None:
    """The shipped weights file for ``model`` trained on data ``data`` with settings ``train``, verified by its
    sha256; None when edgekd ships none (or the file does not match its recorded hash: then it says so)."""
    folder = folder or weights_dir()
    for entry in load_manifest(folder).teachers:
        if entry.key != (model, data, train):
            continue
        path = folder / entry.file
        if path.is_file() and sha256_of(path) == entry.sha256:
            return path
        console.info(f"teacher: shipped weights {path} do not match their recorded sha256 (damaged, or a Git LFS "
                     f"pointer): training instead; {entry.made_by} remakes them")
    return None


def record_teacher(entry: ShippedWeights, *, folder: Path | None = None) -> None:
    """Add ``entry`` to the manifest, replacing one with the same model, data and settings (written atomically)."""
    folder = folder or weights_dir()
    kept = [e for e in load_manifest(folder).teachers if e.key != entry.key]
    text = HEADER + yaml.safe_dump({"teachers": [e.model_dump() for e in [*kept, entry]]}, sort_keys=False)
    write_text(folder / MANIFEST, text)


HEADER = """\
# Weights shipped with edgekd (see edgekd/models/shipped.py). A teacher stage whose model, data
# fingerprint and training-settings fingerprint match an entry loads its file (sha256-checked)
# instead of training; `edgekd compress --train-teacher` trains anyway. Written by the made_by script.
"""

DEFAULT_TEACHER = "cnn-fashion-mnist.safetensors"  # the default recipe's teacher (benchmarks/teacher_fashion_mnist.py)
