"""Training under torchrun: 2 CPU processes (gloo) match 1 process, and `compress --nproc 2` runs a recipe."""

import json
import re

from conftest import run_cli

from edgekd.distributed import without_option

# Enough data and epochs that run-to-run noise (CPU float non-determinism: 1.7 points between two
# single-process runs here) stays well inside the 3-point bar; 3 epochs on 6,000 images varied by 2.9.
TRAIN = ("train", "cnn-tiny", "--epochs", "4", "--train-subset", "12000", "--lr", "0.1", "--batch-size", "128")


def validation_accuracy(stdout: str) -> float:
    return float(re.search(r"validation accuracy ([\d.]+)", stdout).group(1))


def test_two_processes_reach_the_accuracy_of_one_with_the_same_global_batch(tmp_path):
    one = run_cli(*TRAIN, "--out", str(tmp_path / "one.safetensors"))
    two = run_cli(*TRAIN, "--out", str(tmp_path / "two.safetensors"), "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "launching 2 processes" in two.stderr
    # each process sees half of every global batch of 128; gradients are averaged by DDP
    assert abs(validation_accuracy(one.stdout) - validation_accuracy(two.stdout)) <= 0.03
    assert validation_accuracy(two.stdout) > 0.6  # it learned, on both halves of the data
    assert two.stdout.count("validation accuracy") == 1  # only rank 0 reports
    assert (tmp_path / "two.safetensors").is_file()


def test_compress_with_two_processes_runs_the_fast_recipe(tmp_path):
    out = tmp_path / "run"
    result = run_cli("compress", "--nproc", "2", "--recipe", "fast", "--target", "host", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["teacher", "distill", "quantize", "export", "benchmark"]
    teacher, student = report["stages"][:2]
    assert teacher["accuracy"] > 0.6 and student["accuracy"] > 0.5
    assert result.stdout.count("report in") == 1


def test_the_relaunched_command_drops_only_nproc():
    assert without_option(["compress", "--nproc", "2", "--out", "x"], "--nproc") == ["compress", "--out", "x"]
    assert without_option(["compress", "--nproc=2", "--recipe", "fast"], "--nproc") == ["compress", "--recipe", "fast"]
