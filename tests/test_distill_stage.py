"""The distill stage on real data: a short run improves the student; recipes chain it."""

import json

import pytest

from conftest import run_cli
from edgekd.context import RunContext
from edgekd.data import DataSpec, load_data
from edgekd.models.loading import build_model
from edgekd.recipe import load_recipe
from edgekd.stages.distill import DistillStage
from edgekd.targets import load_target
from edgekd.train import TrainConfig, accuracy, fit


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    data = load_data(DataSpec(train_subset=6000, val_subset=1000))
    teacher = build_model("cnn-small", data.info)
    fit(teacher, data, TrainConfig(epochs=3, lr=0.05), progress=False)
    return data, teacher


def make_ctx(tmp_path, data, teacher):
    ctx = RunContext(out_dir=tmp_path, target=load_target("host"), data=data, cache_dir=tmp_path / "cache",
                     progress=False, teacher=teacher, model_spec="cnn-small")
    ctx.begin_stage(tmp_path / "stage")
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    return ctx


@pytest.mark.parametrize("losses", [
    [{"name": "kd"}],
    [{"name": "kd"}, {"name": "at", "weight": 1.0, "pairs": [["block2", "block2"]]}],
    [{"name": "lit", "epochs": 1}, {"name": "kd"}],
])
def test_short_distillation_improves_the_student(losses, setting, tmp_path):
    data, teacher = setting
    stage = DistillStage(student="cnn-tiny", losses=losses, train=TrainConfig(epochs=2, lr=0.05, augment=None))
    ctx = make_ctx(tmp_path, data, teacher)
    before = accuracy(build_model("cnn-tiny", data.info), ctx.val_loader)
    student = stage.apply(teacher, ctx)
    after = accuracy(student, ctx.val_loader)
    assert after > before + 0.2 and after > 0.5
    assert set(student.state_dict()) == set(build_model("cnn-tiny", data.info).state_dict())  # no regressors
    assert (ctx.stage_dir / "model.safetensors").exists()


def test_teacher_logits_are_cached_on_disk_and_reused(setting, tmp_path):
    data, teacher = setting
    stage = DistillStage(student="cnn-tiny", train=TrainConfig(epochs=1, lr=0.05, augment=None))
    stage.apply(teacher, make_ctx(tmp_path, data, teacher))
    files = list((tmp_path / "cache" / "teacher-logits").glob("*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    stage.apply(teacher, make_ctx(tmp_path, data, teacher))
    assert files[0].stat().st_mtime_ns == stamp


def test_derived_student_and_born_again(setting, tmp_path):
    data, teacher = setting
    ctx = make_ctx(tmp_path, data, teacher)
    half = DistillStage(derive={"width": 0.5}, train=TrainConfig(epochs=0)).apply(teacher, ctx)
    assert half.block1[0].out_channels == 8  # cnn-small is 16 wide
    same = DistillStage(derive={"width": 1.0}, train=TrainConfig(epochs=0)).apply(teacher, make_ctx(tmp_path, data, teacher))
    assert [p.shape for p in same.parameters()] == [p.shape for p in teacher.parameters()]


def test_recipe_with_assistant_chain_and_bad_loss_settings(tmp_path):
    path = tmp_path / "ta.yaml"
    path.write_text("stages:\n  - stage: teacher\n  - stage: distill\n    student: cnn-small\n"
                    "  - stage: distill\n    student: cnn-tiny\n    losses:\n      - {name: kd, temprature: 2}\n")
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ta.yaml:8: stages\[2\].losses\[0\]"):
        load_recipe(path)
    path.write_text(path.read_text().replace("temprature", "temperature"))
    recipe = load_recipe(path)
    assert [s.stage for s in recipe.stages] == ["teacher", "distill", "distill"]


def test_distill_recipe_runs_end_to_end_with_a_users_student(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("data: {source: fashion-mnist, train_subset: 2000, val_subset: 2000}\nstages:\n"
                      "  - stage: teacher\n    model: cnn-tiny\n    train: {epochs: 1, lr: 0.05}\n"
                      "  - stage: distill\n    student: user_code:tiny_net\n    train: {epochs: 1, lr: 0.05, augment: null}\n"
                      "  - stage: export\n")
    result = run_cli("compress", "--target", "host", "--recipe", str(recipe), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    teacher, student, export = report["stages"]
    assert student["details"]["student"] == "user_code:tiny_net" and student["params"] < teacher["params"]
    assert export["accuracy_source"] == "onnxruntime" and export["params"] == student["params"]
    resumed = run_cli("compress", "--target", "host", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--resume")
    assert resumed.returncode == 0 and resumed.stderr.count("skipped") == 3
