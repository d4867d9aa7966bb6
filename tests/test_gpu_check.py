"""benchmarks/gpu_check.py's logic, checked on the CPU: its dry run, its CUDA-test selection, its no-GPU refusal."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu_check  # noqa: E402

STAGES = ("teacher", "prune", "quantize", "export", "benchmark")


def numbers(value):
    """Every int and float in a JSON value."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-check")
    out = folder / "results" / "gpu_check.json"
    code = gpu_check.main(["--cpu-dry-run", "--out", str(out), "--work", str(folder / "work")])
    return code, json.loads(out.read_text())


def test_dry_run_records_every_part_with_finite_numbers(dry_run):
    code, results = dry_run
    records = {"loop": results["loop"]["gpu"], **{name: results[name] for name in gpu_check.PARTS[1:]}}
    assert code == 0, {name: r.get("error") for name, r in records.items()}
    assert results["dry_run"] is True and results["machine"]["device"] == "cpu" and results["machine"]["torch"]
    for name, record in records.items():
        assert record["status"] in ("ok", "skipped"), (name, record)
        assert record["seconds"] > 0 or record["status"] == "skipped"  # a part that ran took time
    assert all(math.isfinite(n) for n in numbers(results))


def test_dry_run_loop_compress_and_qat_measured(dry_run):
    _, results = dry_run
    loop = results["loop"]["gpu"]
    assert loop["status"] == "ok" and loop["edgekd_images_per_second"] > 0 and loop["plain_images_per_second"] > 0
    assert len(loop["edgekd_seconds"]) == len(loop["plain_seconds"]) == loop["epochs"] == 2
    assert loop["ratio"] == pytest.approx(loop["edgekd_images_per_second"] / loop["plain_images_per_second"], rel=0.05)
    compress = results["compress"]
    assert compress["status"] == "ok" and tuple(compress["stages"]) == STAGES
    assert all(compress["stages"][name]["forwards"].get("cpu", 0) > 0 for name in ("teacher", "prune"))
    assert compress["accuracy"] == compress["stages"]["benchmark"]["accuracy"]  # the shipped model's, as reported
    qat = results["qat"]
    assert qat["status"] == "ok" and qat["quantizers"] > 0 and set(qat["quantizer_tensors"]) == {"cpu"}
    assert len(qat["losses"]) == 2 and qat["quantizer_grads"] > 0


SKIP = "pytest.mark." + "skipif"  # spelled in two so that this file does not look CUDA-marked itself


def test_cuda_tests_runs_only_the_cuda_marked_tests(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_marked.py").write_text(
        f"import pytest, torch\n\n@{SKIP}(not torch.cuda.is_available(), reason='needs a CUDA GPU')\n"
        "def test_on_gpu():\n    assert torch.ones(1, device='cuda').item() == 1\n\n"
        "def test_on_cpu_fails():\n    assert False\n")
    (tests / "test_plain.py").write_text("def test_plain_fails():\n    assert False\n")
    record = gpu_check.cuda_tests(tests, tmp_path / "pytest.log", timeout=120)
    assert [Path(f).name for f in record["files"]] == ["test_marked.py"]
    assert record["status"] == "ok" and record["tests"] == 1 and record["failures"] == 0
    assert record["skipped"] + record["passed"] == 1 and record["skipped"] == int(not torch.cuda.is_available())
    assert (tmp_path / "pytest.log").exists()


def test_cuda_tests_with_none_marked_is_skipped(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    record = gpu_check.cuda_tests(tmp_path, tmp_path / "pytest.log", timeout=60)
    assert record["status"] == "skipped" and "no test" in record["reason"] and record["files"] == []


def test_without_cuda_it_stops_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA GPU" in err and "--cpu-dry-run" in err
    assert not out.exists()
