"""End to end, as a user runs it: `edgekd compress --recipe fast` and the mistakes users make."""

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from conftest import ROOT, run_cli
from pydantic import ValidationError

from edgekd.report.schema import Report
from edgekd.data.idx import find_fashion_mnist


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "orin"
    result = run_cli("compress", "--target", "jetson-orin", "--recipe", "fast", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_fast_run_writes_the_run_folder(fast_run):
    out, result = fast_run
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["teacher", "distill", "quantize", "export", "benchmark"]
    assert report["target"]["name"] == "jetson-orin" and report["target"]["runtime"] == "tensorrt"
    for rel in report["artifacts"].values():
        assert (out / rel).exists()
    baseline = json.loads((ROOT / "examples" / "fast" / "jetson-orin" / "report.json").read_text())
    for stage, committed in zip(report["stages"], baseline["stages"], strict=True):
        assert stage["params"] > 0 and stage["macs"] > 0 and stage["size_bytes"] > 0
        # the committed example run of the same recipe and target; CPU training here varies by up to ~2 points
        assert committed["accuracy"] - 0.03 <= stage["accuracy"] <= 1.0, (stage["name"], committed["accuracy"])
    teacher, student, quantize, export, bench = report["stages"]
    assert student["params"] < teacher["params"] and student["accuracy_source"] == "pytorch"
    assert export["params"] == student["params"]  # the student is what ships, in int8
    assert quantize["details"]["scheme"] == "tensorrt" and quantize["details"]["drop_points"] <= 1.0
    assert export["details"]["precision"] == "int8" and export["accuracy"] == quantize["accuracy"]
    assert export["accuracy_source"] == "onnxruntime" and export["details"]["parity"]["top1_agreement"] >= 0.95
    assert "--stronglyTyped" in (out / "build_engine.sh").read_text()
    latency = bench["latency"]
    host = [r for r in latency if r["kind"] == "measured"]
    orin = [r for r in latency if r["device"] == "jetson-orin"]
    assert {r["batch"] for r in host} == {1, 64} and all(r["ms"] > 0 and r["runs"] >= 200 for r in host)
    assert all(r["device"].startswith("host") for r in host)
    # the Jetson figures are estimates, labelled so, and never a host figure
    assert orin and all(r["kind"] == "estimated" and r["ms"] > 0 and "not a measurement" in r["note"] for r in orin)
    assert {r["batch"] for r in orin} == {1, 8}
    assert bench["details"]["layer_times"]["nodes"][0]["us"] > 0
    assert "accuracy" in result.stdout and "report.md" in result.stdout
    assert "estimated" in (out / "report.md").read_text()


def test_report_json_follows_its_schema(fast_run):
    report = json.loads((fast_run[0] / "report.json").read_text())
    Report.model_validate(report)
    broken = json.loads(json.dumps(report))
    broken["stages"][-1]["latency"][0]["kind"] = "guessed"
    with pytest.raises(ValidationError):
        Report.model_validate(broken)
    broken["stages"][-1]["latency"][0].update(kind="estimated", ms=None)  # an estimate must carry its figure
    with pytest.raises(ValidationError):
        Report.model_validate(broken)


def test_report_accuracy_matches_an_independent_onnx_runtime_evaluation(fast_run):
    out, _ = fast_run
    report = json.loads((out / "report.json").read_text())
    pre = report["preprocessing"]
    folder = find_fashion_mnist()
    images = np.frombuffer(gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8)
    x = images.reshape(-1, 1, 28, 28).astype(np.float32) * pre["scale"]
    x = (x - np.array(pre["mean"], np.float32).reshape(1, -1, 1, 1)) / np.array(pre["std"], np.float32).reshape(1, -1, 1, 1)
    session = ort.InferenceSession(str(out / report["artifacts"]["model_onnx"]), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1000]})[0]
                             for i in range(0, len(x), 1000)])
    independent = float((logits.argmax(1) == labels).mean())
    assert report["data"]["splits"]["report"]["items"] == 10000
    assert abs(report["summary"]["accuracy"] - independent) <= 0.001


def test_deploy_bundle_runs_its_inference_example_on_real_images(fast_run, tmp_path):
    out, _ = fast_run
    deploy = out / "deploy"
    assert sorted(p.name for p in deploy.iterdir()) == ["build_engine.sh", "infer.py", "model.onnx",
                                                         "preprocessing.json"]
    assert (deploy / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    assert "--stronglyTyped" in (deploy / "build_engine.sh").read_text()
    folder = find_fashion_mnist()
    images = np.frombuffer(gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8)
    paths = []
    for i in range(40):
        path = tmp_path / f"test{i}.png"
        Image.fromarray(images[i * 784:(i + 1) * 784].reshape(28, 28)).save(path)
        paths.append(str(path))
    copied = tmp_path / "device"
    shutil.copytree(deploy, copied)  # the bundle is self-contained: it runs from wherever it is copied
    result = subprocess.run([sys.executable, str(copied / "infer.py"), *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    pre = json.loads((deploy / "preprocessing.json").read_text())
    predicted = [pre["classes"].index(line.split("\t")[1]) for line in result.stdout.splitlines()]
    assert len(predicted) == 40
    assert np.mean(np.array(predicted) == labels[:40]) >= 0.6  # a 40-image sample of a ~0.75 model
    # the same images, preprocessed as preprocessing.json says, straight into ONNX Runtime
    mean, std = (np.array(pre[key], np.float32).reshape(1, -1, 1, 1) for key in ("mean", "std"))
    x = (images[:40 * 784].reshape(40, 1, 28, 28).astype(np.float32) * pre["scale"] - mean) / std
    session = ort.InferenceSession(str(deploy / "model.onnx"), providers=["CPUExecutionProvider"])
    assert predicted == session.run(None, {session.get_inputs()[0].name: x})[0].argmax(1).tolist()  # 40 of 40


def test_resume_redoes_no_finished_stage(fast_run):
    out, _ = fast_run
    before = json.loads((out / "report.json").read_text())
    result = run_cli("compress", "--target", "jetson-orin", "--recipe", "fast", "--out", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("finished earlier, outputs verified; skipped") == 5
    after = json.loads((out / "report.json").read_text())
    assert after["stages"] == before["stages"]


def test_existing_run_is_not_overwritten_silently(fast_run):
    out, _ = fast_run
    onnx_bytes = (out / "model.onnx").read_bytes()
    result = run_cli("compress", "--target", "jetson-orin", "--recipe", "fast", "--out", str(out))
    assert result.returncode == 1 and "already holds a run; pass --resume" in result.stderr
    assert (out / "model.onnx").read_bytes() == onnx_bytes


def test_python_api_runs_the_same_job_with_a_cached_teacher(fast_run, tmp_path):
    import edgekd

    result = edgekd.compress(target="host", recipe="fast", out=tmp_path / "api", progress=False)
    report = result.report
    assert report["stages"][0]["details"]["source"].startswith("cached training")
    assert all(r["kind"] == "measured" for r in report["stages"][-1]["latency"])  # host is measured
    assert (tmp_path / "api" / "model.onnx").is_file()


def test_users_own_model_and_weights_by_import_path(tmp_path):
    from safetensors.torch import save_file

    from user_code import tiny_net

    save_file(tiny_net(10, 1).state_dict(), tmp_path / "mine.safetensors")
    recipe = tmp_path / "small.yaml"  # the recipe's own teacher is replaced; its student distils from the user's
    recipe.write_text("data: {train_subset: 2000, val_subset: 1000}\nstages:\n  - stage: teacher\n    model: cnn-small\n"
                      "  - stage: distill\n    student: cnn-tiny\n    train: {epochs: 1, augment: null}\n"
                      "  - stage: export\n")
    result = run_cli("compress", "--target", "raspberry-pi-5", "--recipe", str(recipe), "--teacher",
                     "user_code:tiny_net", "--weights", str(tmp_path / "mine.safetensors"), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["teacher", "distill", "export"]
    assert report["stages"][0]["details"]["source"].startswith("weights file")
    assert report["stages"][0]["params"] == sum(p.numel() for p in tiny_net(10, 1).parameters())


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "error:" in result.stderr, result.stderr
    error = result.stderr[result.stderr.index("error:"):].rstrip("\n")
    assert "\n" not in error, "the error must be one line"
    for fragment in fragments:
        assert fragment in error, result.stderr


def test_unknown_target(tmp_path):
    result = run_cli("compress", "--target", "jetson-nano-orin", "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "unknown target 'jetson-nano-orin'", "Known targets:", "jetson-orin-nano")
    assert not (tmp_path / "x").exists()


def test_missing_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train-images-idx3-ubyte.gz").write_bytes(b"")
    result = run_cli("compress", "--recipe", "fast", "--data", str(empty), "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "missing", "apt-get install -y dataset-fashion-mnist")


def test_corrupt_idx_file(tmp_path):
    folder = tmp_path / "fm"
    folder.mkdir()
    for f in find_fashion_mnist().iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    raw = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(raw[:-200])
    result = run_cli("compress", "--recipe", "fast", "--data", str(folder), "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "train-labels-idx1-ubyte.gz is truncated")


def test_mismatched_checkpoint(tmp_path):
    from edgekd.models import create_model

    torch.save(create_model("resnet8", in_channels=1).state_dict(), tmp_path / "r8.pt")
    result = run_cli("compress", "--recipe", "fast", "--teacher", "cnn-small", "--weights", str(tmp_path / "r8.pt"),
                     "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "does not fit the model PlainCNN", "missing", "unexpected")


def test_model_that_cannot_take_the_data(tmp_path):
    result = run_cli("compress", "--recipe", "fast", "--teacher", "user_code:rgb_only_net", "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "cannot take the data's images (1×28×28", "input channels")


def test_malformed_recipe_names_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("stages:\n  - stage: teacher\n    model: cnn\n   epochs: 3\n")
    result = run_cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "bad.yaml:4", "not valid YAML")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("compress", "--recipe", "fast", "--out", str(blocker / "run"))
    assert_one_line_error(result, "cannot write to", "choose another --out")


def test_targets_commands():
    listing = run_cli("targets")
    assert listing.returncode == 0
    assert {"jetson-orin", "raspberry-pi-5", "host"} <= {line.split()[0] for line in listing.stdout.splitlines()}
    shown = run_cli("targets", "show", "jetson-orin")
    assert shown.returncode == 0 and "int8_tops: 85.0" in shown.stdout
    assert_one_line_error(run_cli("targets", "show", "orin"), "unknown target 'orin'")


def test_bench_on_the_host_writes_a_measured_record(fast_run, tmp_path):
    out, _ = fast_run
    result = run_cli("bench", str(out / "model.onnx"), "--target", "host", "--batch", "1", "--batch", "4",
                     "--out", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    records = json.loads((tmp_path / "b.json").read_text())["latency"]
    assert [r["batch"] for r in records] == [1, 4]
    assert all(r["kind"] == "measured" and r["ms"] > 0 and r["runs"] == 200 for r in records)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    merged = run_cli("report", str(run), "--merge", str(tmp_path / "b.json"))
    assert merged.returncode == 0, merged.stderr
    latency = json.loads((run / "report.json").read_text())["stages"][-1]["latency"]
    assert [r for r in latency if r["batch"] == 4 and r["kind"] == "measured"]  # batch 4 came from the bench file
    assert "| 4 |" in (run / "report.md").read_text()
    compared = run_cli("report", str(out), str(run))
    assert compared.returncode == 0 and compared.stdout.count("| jetson-orin | fast |") == 2


def test_report_html_is_self_contained_and_renders_in_headless_chromium(fast_run, tmp_path):
    out, _ = fast_run
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # nothing to fetch
    assert page.count("<svg") >= 4  # accuracy/latency, size, MACs, time per layer
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium when run as root)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", (out / "report.html").as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert "accuracy against latency" in dom.stdout and dom.stdout.count("<circle") >= 2
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2400", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # something was drawn, not a blank page


def test_bench_refuses_to_pass_this_machine_off_as_another_device(fast_run):
    out, _ = fast_run
    assert_one_line_error(run_cli("bench", str(out / "model.onnx"), "--target", "raspberry-pi-5"),
                          "cannot stand for raspberry-pi-5")
    assert_one_line_error(run_cli("bench", str(out / "model.onnx"), "--target", "jetson-orin"),
                          "TensorRT is not installed here")


def test_import_edgekd_loads_no_heavy_backend():
    code = "import sys, edgekd; print(sorted(m for m in ('onnxruntime', 'tensorrt', 'openvino') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_command_saves_weights_that_load(tmp_path):
    result = run_cli("train", "cnn-tiny", "--out", str(tmp_path / "w.safetensors"), "--epochs", "1",
                     "--train-subset", "1000")
    assert result.returncode == 0, result.stderr
    assert "on the report split (" in result.stdout and not (tmp_path / "w.ckpt").exists()
    from edgekd.data import DataInfo
    from edgekd.models.loading import build_model, load_weights

    load_weights(build_model("cnn-tiny", DataInfo("fm", 10, 1, (28, 28), (0.5,), (0.5,))), tmp_path / "w.safetensors")
