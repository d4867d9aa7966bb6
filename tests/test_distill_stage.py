"""The distill stage on real data: a short run improves the student; recipes chain it."""

import json

import pytest
import torch

from conftest import report_loader, run_cli, run_stage, stage_ctx
from edgekd.data import DataSpec, load_data
from edgekd.models.loading import build_model
from edgekd.recipe import load_recipe
from edgekd.stages.distill import DistillStage
from edgekd.train import TrainConfig, accuracy, fit


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    data = load_data(DataSpec(train_subset=7000, selection=1000, val_subset=1000))
    torch.manual_seed(0)  # the same teacher whichever tests ran before (an unseeded one made DKD's gain vary)
    teacher = build_model("cnn-small", data.info)
    fit(teacher, data, TrainConfig(epochs=3, lr=0.05), progress=False)
    return data, teacher


def make_ctx(tmp_path, data, teacher):
    return stage_ctx(tmp_path, data)


def distil(stage, ctx, teacher):
    out, _ = run_stage(stage, ctx, teacher, model_spec="cnn-small")
    return out.model


@pytest.mark.parametrize("losses", [
    [{"name": "kd"}],
    [{"name": "kd"}, {"name": "at", "weight": 1.0, "pairs": [["block2", "block2"]]}],
    [{"name": "lit", "epochs": 1}, {"name": "kd"}],
])
def test_short_distillation_improves_the_student(losses, setting, tmp_path):
    data, teacher = setting
    stage = DistillStage(student="cnn-tiny", losses=losses, train=TrainConfig(epochs=2, lr=0.05, augment=None))
    ctx = make_ctx(tmp_path, data, teacher)
    before = accuracy(build_model("cnn-tiny", data.info), report_loader(data))
    student = distil(stage, ctx, teacher)
    after = accuracy(student, report_loader(data))
    assert after > before + 0.2 and after > 0.5
    assert set(student.state_dict()) == set(build_model("cnn-tiny", data.info).state_dict())  # no regressors
    assert (ctx.stage_dir / "model.safetensors").exists()


def test_distillation_beats_the_same_student_trained_alone_on_the_same_budget(setting, tmp_path):
    """DKD (Zhao et al. 2022) vs cross-entropy alone: same student, initialization, batches and epochs.

    Measured here (6,000 images, 2 epochs, cnn-tiny): alone 0.584 / 0.597, DKD 0.642 / 0.672 for
    seeds 0 / 1. Plain KD (T=4, α=0.9) did not beat the student alone at this short budget (0.577 /
    0.564): it needs more epochs (benchmarks/distill_fashion_mnist.py: +0.7 points at 6 epochs).
    """
    data, teacher = setting
    loss = "dkd"
    budget = TrainConfig(epochs=2, lr=0.05, augment=None, seed=0)
    torch.manual_seed(budget.seed)  # the same initialization as the distill stage gives its student
    alone = build_model("cnn-tiny", data.info)
    fit(alone, data, budget, progress=False)
    student = distil(DistillStage(student="cnn-tiny", losses=[{"name": loss}], train=budget),
                     make_ctx(tmp_path, data, teacher), teacher)
    gain = accuracy(student, report_loader(data)) - accuracy(alone, report_loader(data))
    assert gain >= 0.03, f"{loss} gained {gain:+.4f}"


def test_teacher_logits_are_cached_on_disk_and_reused(setting, tmp_path):
    data, teacher = setting
    stage = DistillStage(student="cnn-tiny", train=TrainConfig(epochs=1, lr=0.05, augment=None))
    distil(stage, make_ctx(tmp_path, data, teacher), teacher)
    files = list((tmp_path / "cache" / "teacher-logits").glob("*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    distil(stage, make_ctx(tmp_path, data, teacher), teacher)
    assert files[0].stat().st_mtime_ns == stamp


def test_derived_student_and_born_again(setting, tmp_path):
    data, teacher = setting
    ctx = make_ctx(tmp_path, data, teacher)
    half = distil(DistillStage(derive={"width": 0.5}, train=TrainConfig(epochs=0)), ctx, teacher)
    assert half.block1[0].out_channels == 8  # cnn-small is 16 wide
    same = distil(DistillStage(derive={"width": 1.0}, train=TrainConfig(epochs=0)), make_ctx(tmp_path, data, teacher),
                  teacher)
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
