"""One way to build a chain: the budget search scores a candidate's plan of stages, and the picked recipe is that
plan written out, so the search's model and the final run's model come from the same settings and the same code."""

import pytest

import edgekd
from edgekd.api import plan_recipe
from edgekd.data import DataSpec, load_data
from edgekd.errors import ConfigError
from edgekd.models.loading import build_model
from edgekd.pipeline import run_pipeline
from edgekd.plan import Plan
from edgekd.recipe import Recipe, load_recipe
from edgekd.search.evaluate import Evaluator
from edgekd.search.plans import compression_plan, picked_recipe, proxy_plan, recipe_yaml
from edgekd.search.space import ORIGINAL, Candidate
from edgekd.targets import load_target
from edgekd.train import TrainConfig, fit

COMPRESSING = ("prune", "factorize", "quantize")


def compressing(recipe: Recipe) -> Plan:
    """The stages of a recipe that compress its base (what a search candidate is)."""
    return Plan(tuple(s for s in recipe.stages if s.stage in COMPRESSING))


def test_the_same_plan_has_the_same_settings_hash_and_the_picked_recipe_is_that_plan(tmp_path):
    budget = edgekd.Budget(max_accuracy_drop=1.0, batch=8, recovery_epochs=2, seed=3)
    pick = Candidate("cnn-tiny", 0.5, True, "global")
    plan = compression_plan(pick, budget)
    assert plan.names() == ("prune", "quantize")
    assert compression_plan(Candidate("cnn-tiny", 0.5, True, "global"), budget).settings_hash == plan.settings_hash
    others = [Candidate("cnn-tiny", 0.5, False, "global"), Candidate("cnn-tiny", 0.3, True, "global"),
              Candidate("cnn-tiny", 0.5, True, "uniform"), Candidate("cnn-tiny", 0.0, True, "uniform", 0.5)]
    assert len({compression_plan(c, budget).settings_hash for c in others} - {plan.settings_hash}) == len(others)
    proxy = proxy_plan(plan, 1, 20000)  # the cheap stand-in differs in its fine-tunes' epochs only
    assert proxy.settings_hash != plan.settings_hash
    assert proxy.stages[0].recovery.train.epochs == 1 and plan.stages[0].recovery.train.epochs == 2
    assert proxy.stages[0].model_copy(update={"recovery": plan.stages[0].recovery}) == plan.stages[0]
    assert proxy.stages[1].qat.train.epochs == 1 and plan.stages[1].qat.train.epochs == 2
    assert proxy.stages[1].model_copy(update={"qat": plan.stages[1].qat}) == plan.stages[1]
    few = proxy_plan(plan, 1, 300).stages[1]  # on few proxy images, calibration leaves accuracy control its 100
    assert (few.calibration_images, plan.stages[1].calibration_images) == (200, 512)
    with pytest.raises(ConfigError, match="proxy_images of at least 132"):
        edgekd.Budget(max_accuracy_drop=1.0, proxy_images=131)
    assert edgekd.Budget(max_accuracy_drop=1.0, proxy_images=131, precisions=("float",)).proxy_images == 131

    students = {"cnn-tiny": edgekd.Distill(student="cnn-tiny")}
    recipe = picked_recipe(plan_recipe(None, stages=None, recipe="default", weights=None, data=None), pick, budget,
                           students)
    assert compressing(recipe).settings_hash == plan.settings_hash
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe_yaml(recipe))
    assert compressing(load_recipe(path)).settings_hash == plan.settings_hash  # written out and read back: the same


@pytest.fixture(scope="module")
def trained():
    data = load_data(DataSpec(source="fashion-mnist", train_subset=1500, val_subset=300))
    teacher = build_model("cnn-tiny", data.info)
    fit(teacher, data, TrainConfig(epochs=1, lr=0.05), progress=False)
    return data, teacher.eval()


def test_an_unpruned_candidate_ships_the_very_onnx_model_the_search_scored(trained, tmp_path):
    data, teacher = trained
    target = load_target("raspberry-pi-5")  # estimated latency and slow layers: no timing noise in either build
    budget = edgekd.Budget(max_accuracy_drop=1.0, batch=1, reductions=(0.0,), factorizations=(), precisions=("int8",),
                           proxy_images=600, score_images=300)
    candidate = Candidate(ORIGINAL, 0.0, True)
    evaluator = Evaluator(teacher, data, target, budget, cache_dir=tmp_path / "cache")
    try:
        scored, searched, _ = evaluator.measured(candidate, "final", data.selection)  # how a finalist is scored
    finally:
        evaluator.close()
    picked = picked_recipe(plan_recipe(teacher, stages=None, recipe=None, weights=None, data=None), candidate, budget,
                           {})
    assert [s.stage for s in picked.stages] == ["teacher", "quantize", "export", "benchmark"]
    assert scored.plan == compressing(picked).settings_hash == compression_plan(candidate, budget).settings_hash
    final = Recipe(name="pick", stages=picked.stages[:-1])  # the benchmark stage measures, it makes nothing
    out = tmp_path / "run"
    run_pipeline(final, target, out, data=data, user_model=teacher, cache_dir=tmp_path / "cache", progress=False,
                 report=False)
    shipped = (out / "model.onnx").read_bytes()
    assert shipped == searched.SerializeToString()  # byte for byte: graph, initializers, Q/DQ scales, float layers
    assert scored.accuracy == evaluator.judged(searched, data.selection)
