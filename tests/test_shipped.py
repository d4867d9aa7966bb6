"""Shipped weights: the default job's teacher is loaded (sha256-checked) instead of trained, only when it matches."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from conftest import report_loader, run_stage, stage_ctx

from edgekd.api import prepare_recipe
from edgekd.data import load_data
from edgekd.models.loading import build_model
from edgekd.models.shipped import DEFAULT_TEACHER, load_manifest, sha256_of, shipped_teacher, weights_dir
from edgekd.recipe import load_recipe
from edgekd.train import accuracy


@pytest.fixture(scope="module")
def default_data():
    return load_data(load_recipe("default").data)


def test_the_default_recipes_teacher_is_shipped_and_scores_what_its_entry_says(default_data):
    """What makes `make demo` fast: on any machine, the default recipe's teacher stage finds its weights."""
    stage = load_recipe("default").stages[0]
    path = shipped_teacher(stage.model, default_data.fingerprint(), stage.train.fingerprint())
    assert path == weights_dir() / DEFAULT_TEACHER
    entry = next(e for e in load_manifest().teachers if e.file == DEFAULT_TEACHER)
    model = build_model("cnn", default_data.info)
    model.load_state_dict(load_file(path))
    assert accuracy(model, report_loader(default_data)) == pytest.approx(entry.report_accuracy, abs=1e-4)


def test_the_teacher_stage_loads_them_without_training(default_data, tmp_path):
    stage = load_recipe("default").stages[0]
    _, row = run_stage(stage, stage_ctx(tmp_path, default_data))
    assert row.details["source"].startswith(f"shipped weights {DEFAULT_TEACHER}")
    assert "history" not in row.details  # nothing was trained
    assert prepare_recipe("default", train_teacher=True).stages[0].shipped is False  # --train-teacher


def test_other_settings_or_a_damaged_file_are_not_used(default_data, tmp_path, capsys):
    stage = load_recipe("default").stages[0]
    other = stage.train.model_copy(update={"epochs": 17})
    assert shipped_teacher(stage.model, default_data.fingerprint(), other.fingerprint()) is None
    assert shipped_teacher("cnn-small", default_data.fingerprint(), stage.train.fingerprint()) is None
    shutil.copy(weights_dir() / "shipped.yaml", tmp_path / "shipped.yaml")
    damaged = bytearray((weights_dir() / DEFAULT_TEACHER).read_bytes())
    damaged[-1] ^= 0xFF
    (tmp_path / DEFAULT_TEACHER).write_bytes(bytes(damaged))
    assert sha256_of(tmp_path / DEFAULT_TEACHER) != sha256_of(weights_dir() / DEFAULT_TEACHER)
    found = shipped_teacher(stage.model, default_data.fingerprint(), stage.train.fingerprint(), folder=tmp_path)
    assert found is None
    said = capsys.readouterr()
    assert "do not match their recorded sha256" in said.err + said.out


def test_weights_are_safetensors_of_the_models_shape(default_data):
    for entry in load_manifest().teachers:
        state = load_file(weights_dir() / entry.file)
        expected = build_model(entry.model, default_data.info).state_dict()
        assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
