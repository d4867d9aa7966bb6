"""A run killed with SIGKILL in the middle of a stage resumes without redoing finished work."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import run_cli


def start_cli(*args: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "edgekd"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(exe), *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


# Every stage a run has, on a subset (an epoch of distillation lasts seconds, so the kill lands inside the second).
SMALL_RUN = """data: {source: fashion-mnist, train_subset: 5000, val_subset: 1000}
stages:
  - stage: teacher
    model: cnn-small
    train: {epochs: 1, lr: 0.05}
  - stage: distill
    student: cnn-tiny
    train: {epochs: 2, lr: 0.1, augment: null}
  - stage: quantize
    calibration_images: 256
    score_images: 500
    max_accuracy_drop: 2.0
  - stage: export
  - stage: benchmark
    batch_sizes: [1]
"""


def test_sigkill_mid_stage_then_resume(tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RUN)
    args = ("compress", "--target", "host", "--recipe", str(recipe), "--out", str(out))
    proc = start_cli(*args)
    seen = []
    for line in proc.stderr:  # kill right after the distill stage's first epoch checkpoint
        seen.append(line)
        if line.startswith("epoch 1/2") and any("distill for" in s for s in seen):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (out / "report.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["teacher"]

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "teacher: finished earlier, outputs verified; skipped" in resumed.stderr
    assert "resuming training from" in resumed.stderr and "at epoch 2/2" in resumed.stderr
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["teacher", "distill", "quantize", "export", "benchmark"]
    assert not [p for p in out.rglob("*.tmp")]

    fresh = run_cli(*args[:-1], str(tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.stderr
    reference = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert abs(reference["summary"]["accuracy"] - report["summary"]["accuracy"]) <= 0.01


def test_changed_recipe_redoes_the_stale_stage_and_after(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {train_subset: 1000, val_subset: 1000}\nstages:\n  - stage: teacher\n    model: cnn-tiny\n"
                      "    train: {epochs: 1}\n  - stage: export\n    opset: 17\n")
    args = ("compress", "--target", "host", "--recipe", str(recipe), "--out", str(tmp_path / "run"))
    assert run_cli(*args).returncode == 0
    recipe.write_text(recipe.read_text().replace("opset: 17", "opset: 18"))
    again = run_cli(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert "teacher: finished earlier" in again.stderr
    assert "export: settings, data or target changed" in again.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["stages"][1]["details"]["produced_by"]["settings"]["opset"] == 18
