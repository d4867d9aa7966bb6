"""Extending edgekd from user code: a loss and a stage registered in the test, run through compress and recipes."""

from typing import Literal

import pytest
import torch
import torch.nn.functional as F

import edgekd
from edgekd.data import load_fashion_mnist
from edgekd.distill import LOSSES, DistillLoss
from edgekd.errors import ConfigError, UnknownNameError
from edgekd.models import MODELS, create_model
from edgekd.recipe import load_recipe
from edgekd.runtime import RUNTIMES
from edgekd.stages import PUBLIC_STAGES, STAGES, check_order, stage_class
from edgekd.stages.base import Stage


@pytest.fixture
def registries():
    """Whatever a test registers is gone afterwards, so no other test sees it."""
    before = {id(r): dict(r) for r in (LOSSES, STAGES, MODELS, RUNTIMES)}
    yield
    for registry in (LOSSES, STAGES, MODELS, RUNTIMES):
        registry.clear()
        registry.update(before[id(registry)])


def logit_mse_loss():
    @edgekd.register_loss("test-logit-mse")
    class LogitMSE(DistillLoss):
        """Ba & Caruana 2014: regress the teacher's logits, L = mean (z_s − z_t)²."""

        calls = 0
        needs_teacher = True

        def forward(self, student, teacher, labels):
            type(self).calls += 1
            return F.mse_loss(student.logits, teacher.logits)

    return LogitMSE


def census_stage():
    @edgekd.register_stage("test-census")
    class Census(Stage):
        """Counts the model's parameters into its report row and hands the model on unchanged."""

        stage: Literal["test-census"] = "test-census"
        label: str = "census"
        uses_target = False

        def apply(self, given, ctx, row):
            row.details[self.label] = sum(p.numel() for p in given.model.parameters())
            return given

    return Census


def logit_gap(student, teacher, images) -> float:
    with torch.inference_mode():
        return float(F.mse_loss(student.eval()(images), teacher.eval()(images)))


def test_a_users_loss_and_stage_run_through_compress(registries, tmp_path):
    loss, stage = logit_mse_loss(), census_stage()
    source = load_fashion_mnist()
    train, val = source.train.subset(1000, seed=0), source.val.subset(300, seed=0)
    torch.manual_seed(0)
    teacher = create_model("cnn-tiny", in_channels=1, num_classes=10, input_size=(28, 28))
    with torch.no_grad():  # logits far from a fresh student's: what imitating them must close
        teacher.classifier[-1].bias.copy_(torch.arange(10.0) - 4.5)
    student = create_model("cnn-tiny", in_channels=1, num_classes=10, input_size=(28, 28))
    images = (val.images[:256].float() / 255 - 0.5) / 0.5
    gap_before = logit_gap(student, teacher, images)
    result = edgekd.compress(teacher, train, val, target="host", out=tmp_path, progress=False,
                             stages=[edgekd.Distill(student=student, losses=[{"name": "test-logit-mse"}],
                                                    label_weight=0, train={"epochs": 2, "lr": 0.03, "batch_size": 64}),
                                     stage(label="parameters")])
    assert loss.calls >= 2 * 1000 * 0.9 // 64  # every training step of both epochs (0.9: the selection hold-out)
    # it imitated the teacher's logits: mean squared gap 8.25 before, 0.076 after (measured, 30 steps)
    assert logit_gap(result.model, teacher, images) < 0.05 * gap_before
    rows = {s["name"]: s for s in result.report["stages"]}
    assert rows["distill"]["details"]["losses"][0]["name"] == "test-logit-mse"
    assert rows["test-census"]["details"]["parameters"] == sum(p.numel() for p in result.model.parameters())


def test_a_registered_stage_and_loss_are_named_in_a_recipe(registries, tmp_path):
    logit_mse_loss(), census_stage()
    path = tmp_path / "mine.yaml"
    path.write_text("stages:\n  - stage: teacher\n    model: cnn-tiny\n"
                    "  - stage: distill\n    student: cnn-tiny\n    losses: [{name: test-logit-mse, weight: 2}]\n"
                    "  - stage: test-census\n    label: count\n")
    recipe = load_recipe(path)
    assert [s.stage for s in recipe.stages] == ["teacher", "distill", "test-census"]
    assert recipe.stages[1].losses[0].build().__class__ is LOSSES["test-logit-mse"]
    assert recipe.stages[2].label == "count"


def test_registration_refuses_taken_names_and_wrong_kinds(registries):
    with pytest.raises(ConfigError, match="loss 'kd' is already registered .* override=True"):
        edgekd.register_loss("kd")(type("Mine", (DistillLoss,), {}))
    with pytest.raises(ConfigError, match="subclass of edgekd.distill.DistillLoss"):
        edgekd.register_loss("not-a-loss")(dict)
    with pytest.raises(ConfigError, match="a registered loss is a term of the objective"):
        edgekd.register_loss("test-phase")(type("Phase", (DistillLoss,), {"is_phase": True}))

    class Wrong(Stage):
        stage: Literal["other"] = "other"

    with pytest.raises(ConfigError, match="needs the field `stage: Literal\\['mine'\\]"):
        edgekd.register_stage("mine")(Wrong)
    census_stage()
    census_stage()  # a notebook cell run again re-registers its own class: allowed
    edgekd.register_model("test-net")(lambda **shape: torch.nn.Linear(1, 1))
    assert isinstance(create_model("test-net", in_channels=1, num_classes=2, input_size=(1, 1)), torch.nn.Linear)
    edgekd.register_runtime("test-rt", "my_package.my_runtime")
    assert RUNTIMES["test-rt"] == "my_package.my_runtime"
    with pytest.raises(UnknownNameError, match="Did you mean 'test-census'"):
        stage_class("test-censos")


def test_what_the_stage_reads_of_a_loss_is_its_class_not_its_name():
    from edgekd.distill import LossSpec, is_phase, teacher_needed_by

    assert is_phase(LossSpec(name="lit")) and is_phase(LossSpec(name="generations"))
    assert not is_phase(LossSpec(name="kd"))
    assert teacher_needed_by((LossSpec(name="lit"), LossSpec(name="byot"))) == ["lit"]
    assert teacher_needed_by((LossSpec(name="generations"), LossSpec(name="kd"))) == []  # it trains its teachers


def test_unknown_names_list_the_users_entries_too(registries):
    logit_mse_loss()
    with pytest.raises(ValueError, match="unknown loss 'test-logit-msa'. Did you mean 'test-logit-mse'"):
        edgekd.Distill(losses=[{"name": "test-logit-msa"}])
    edgekd.register_model("test-net", lambda **shape: torch.nn.Linear(1, 1))
    with pytest.raises(UnknownNameError, match="Did you mean 'test-net'"):
        create_model("test-nte", in_channels=1, num_classes=2, input_size=(1, 1))
    with pytest.raises(UnknownNameError, match="unknown runtime 'test-rt'"):
        from edgekd.runtime import get_runtime

        get_runtime("test-rt")


def test_a_model_factory_and_a_runtime_are_registered_by_call(registries):
    from functools import partial

    from edgekd.models.cnn import PlainCNN
    from edgekd.runtime import get_runtime

    edgekd.register_model("test-cnn", partial(PlainCNN, width=4, depth=1, stem_depth=1))
    edgekd.register_model("test-cnn", partial(PlainCNN, width=4, depth=1, stem_depth=1))  # the cell run again
    with pytest.raises(ConfigError, match="model 'test-cnn' is already registered .*PlainCNN"):
        edgekd.register_model("test-cnn", partial(PlainCNN, width=8, depth=1, stem_depth=1))
    model = create_model("test-cnn", in_channels=1, num_classes=3, input_size=(28, 28))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    edgekd.register_runtime("test-rt", "json")  # any importable module: imported when used, not before
    import json

    assert get_runtime("test-rt") is json
    with pytest.raises(ConfigError, match="import path as a string"):
        edgekd.register_runtime("test-rt2", json)
    edgekd.register_runtime("onnxruntime", "json", override=True)  # replaced on request (the fixture restores it)
    assert RUNTIMES["onnxruntime"] == "json"


def test_a_users_teacher_free_loss_runs_with_teacher_none(registries):
    @edgekd.register_loss("test-entropy")
    class Confident(DistillLoss):
        """Entropy minimization: L = −Σ p log p, a teacher-free term (Grandvalet & Bengio 2004)."""

        needs_teacher = False

        def forward(self, student, teacher, labels):
            p = student.logits.softmax(1)
            return -(p * p.clamp_min(1e-8).log()).sum(1).mean()

    stage = edgekd.Distill(teacher="none", student="cnn-tiny", losses=[{"name": "test-entropy"}])
    assert stage.needs == ()  # teacher-free with a named student: it can start a recipe
    with pytest.raises(ValueError, match=r"use losses that need none \(.*test-entropy\) or add \{name: generations\}"):
        edgekd.Distill(teacher="none", student="cnn-tiny", losses=[{"name": "kd"}])


def test_the_order_check_names_a_users_stage_that_can_start_a_recipe(registries):
    with pytest.raises(ValueError, match=r"needs a model, which no stage before it makes: put a teacher stage"):
        check_order([edgekd.Prune()])

    @edgekd.register_stage("test-hub")
    class FromHub(Stage):
        """Starts a run from a model downloaded elsewhere (here: a fresh zoo model)."""

        stage: Literal["test-hub"] = "test-hub"
        needs = ()
        makes = ("model",)

    @edgekd.register_stage("test-calibrate")
    class Calibrate(Stage):
        stage: Literal["test-calibrate"] = "test-calibrate"
        needs = ("model", "test-table")

    with pytest.raises(ValueError, match=r"put a teacher or test-hub stage before it"):
        check_order([edgekd.Prune()])
    check_order([FromHub(), edgekd.Prune()])
    with pytest.raises(ValueError, match=r"needs 'test-table', which no .*: put a stage that makes 'test-table'"):
        check_order([FromHub(), Calibrate()])


def test_the_public_stage_names_are_the_lazy_exports():
    assert set(PUBLIC_STAGES) == {"Distill", "Prune", "Factorize", "Quantize", "Export", "Benchmark"}
    for name, cls in PUBLIC_STAGES.items():
        assert getattr(edgekd, name) is cls and STAGES[cls().stage] is cls


def test_deriving_from_a_registered_factory_is_one_clear_error(registries):
    from edgekd.errors import EdgekdError
    from edgekd.models import derive_model

    edgekd.register_model("test-plain")(lambda **shape: torch.nn.Linear(1, 1))
    with pytest.raises(EdgekdError, match="cannot resize"):
        derive_model("test-plain", width=0.5)
