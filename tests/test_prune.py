"""Structured pruning and 2:4 sparsity: topologies, goals, importance, errors, the stage, the recipe."""

import copy
import itertools
import json
import re

import numpy as np
import onnx
import pytest
import torch
from conftest import DISTILLED_ON_A_SUBSET, run_cli, run_stage, stage_ctx
from topologies import CORPUS, TOPOLOGIES, FixedView, UnequalSplit

from edgekd.data import DataSpec, load_data
from edgekd.distill.recovery import RecoveryConfig
from edgekd.errors import PruneError
from edgekd.measure import count_macs, count_params
from edgekd.models import create_model
from edgekd.models.loading import build_model
from edgekd.prune import semistructured
from edgekd.prune.architecture import layer_sizes, resize_like
from edgekd.prune.importance import Importance, accumulate_gradients
from edgekd.prune.goal import Metric, prune_model
from edgekd.prune.search import analyse, search_allocation
from edgekd.targets import load_target
from edgekd.prune.structured import ChannelPruning, protected_layers
from edgekd.runtime.compare import HostComparer
from edgekd.runtime.onnxruntime import create_session
from edgekd.onnx_export import export_onnx
from edgekd.stages.base import Handoff, ReportRow
from edgekd.stages.prune import PruneStage
from edgekd.train import TrainConfig, accuracy, fit

SHAPE = (1, 16, 16)
EXAMPLE = torch.zeros(1, *SHAPE)


def prune_macs(model, reduction=0.5, **how):
    base = count_macs(model, SHAPE)
    how = ChannelPruning(**{"protect": tuple(protected_layers(model, EXAMPLE, ())), **how})
    return search_allocation(model, EXAMPLE, 1 - reduction, lambda m: count_macs(m, SHAPE) / base, how,
                             tolerance=0.05 * reduction)


def ort_matches_torch(model, folder) -> bool:
    path = folder / "pruned.onnx"
    onnx.save(export_onnx(model, SHAPE), path)
    x = torch.randn(4, *SHAPE)
    expected = model.eval()(x).detach().numpy()
    got = create_session(path).run(None, {"input": x.numpy()})[0]
    return np.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_each_topology_prunes_to_half_the_macs_runs_and_exports(name, tmp_path):
    model = TOPOLOGIES[name]().eval()
    before = count_macs(model, SHAPE)
    result = prune_macs(model)
    pruned = result.model
    assert abs(count_macs(pruned, SHAPE) / before - 0.5) <= 0.025  # within ±5% of the goal
    assert count_params(pruned) < count_params(model)
    assert pruned(torch.randn(2, *SHAPE)).shape == (2, 10)
    assert ort_matches_torch(pruned, tmp_path)


def test_split_halves_keep_equal_channel_counts():
    pruned = prune_macs(TOPOLOGIES["split"]()).model
    assert pruned.left[0].in_channels == pruned.right[0].in_channels == pruned.stem[0].out_channels // 2


def test_depthwise_and_grouped_stay_consistent():
    dw = prune_macs(TOPOLOGIES["depthwise"]()).model.dw[0]
    assert dw.groups == dw.in_channels == dw.out_channels
    grouped = prune_macs(TOPOLOGIES["grouped"]()).model.grouped[0]
    assert grouped.groups == 4 and grouped.in_channels % 4 == 0 and grouped.out_channels % 4 == 0


def test_code_that_fixes_a_channel_count_is_named():
    with pytest.raises(PruneError, match=r"after layer 'pool'.*shape '\[-1, 128\]'.*protect"):
        prune_macs(FixedView())
    with pytest.raises(PruneError, match=r"layer stem.0: its output is split into unequal parts \[8, 24\]"):
        prune_macs(UnequalSplit())


def test_protected_layers_keep_their_channels_and_unknown_names_are_answered():
    model = TOPOLOGIES["concat"]()
    assert protected_layers(model, EXAMPLE, ()) == ["head.fc"]  # the output layer, always
    kept = prune_macs(model, protect=tuple(protected_layers(model, EXAMPLE, ("first", "left.*")))).model
    assert kept.stem[0].out_channels == 16 and kept.left[0].out_channels == 32
    assert kept.right[0].out_channels < 32
    with pytest.raises(PruneError, match="did you mean fuse.0"):
        protected_layers(model, EXAMPLE, ("fuse.1",))


def reachable(model, round_to, goal=0.5, tolerance=0.025) -> bool:
    """Brute force over every rounded allocation of the cost model: does any land within the tolerance?"""
    how = ChannelPruning(round_to=round_to, protect=tuple(protected_layers(model, EXAMPLE, ())))
    costs = analyse(model, EXAMPLE, how)
    options = [range(g.channels, g.minimum - 1, -1) for g in costs.groups]
    options = [[k for k in o if k == g.channels or k % g.step == 0] for o, g in zip(options, costs.groups)]
    return any(abs(costs.fraction(list(kept)) - goal) <= tolerance for kept in itertools.product(*options))


@pytest.mark.parametrize("target", ["host", "jetson-orin"])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_corpus_meets_the_goal_with_default_settings_whenever_a_rounded_architecture_does(name, target, tmp_path):
    """Default settings (half the MACs, uniform, the target's channel multiple): met, or provably out of reach."""
    model, round_to = CORPUS[name]().eval(), load_target(target).channel_multiple
    before = count_macs(model, SHAPE)
    try:
        result = prune_model(model, EXAMPLE, round_to=round_to)
    except PruneError as error:
        assert not reachable(model, round_to), f"{name}: a rounded allocation reaches the goal, the search missed it"
        assert re.search(r"nearest reachable reductions are .* would reach it", str(error)), str(error)
        return
    assert abs(count_macs(result.model, SHAPE) / before - 0.5) <= 0.025
    assert all(k % round_to == 0 or k == dict(model.named_modules())[root].out_channels
               for root, k in result.kept.items())
    assert ort_matches_torch(result.model, tmp_path)


def test_a_goal_no_rounded_architecture_reaches_is_refused_with_what_would_reach_it():
    model = TOPOLOGIES["residual"]()  # one coupled group of 32 channels: 24 keep 56.5% of the MACs, 16 keep 25.4%
    assert not reachable(model, 8)
    with pytest.raises(PruneError, match=r"reduction of 43\.5%, not the 50% asked for \(±5%\) with channels in "
                                         r"multiples of 8; the nearest reachable reductions are 43\.5% and 74\.6%; "
                                         r"round_to: 2 would reach it"):
        prune_model(model, EXAMPLE, round_to=8)
    assert abs(prune_model(model, EXAMPLE, round_to=2).reduction - 0.5) <= 0.025


def test_a_latency_goal_is_met_by_bisecting_the_ordered_allocations_on_measurements():
    """Latency is not modelled: the search measures. A stand-in timer whose latency is not linear in MACs
    (as real timings are not) must still be met, which only measuring candidates can do."""
    model = CORPUS["resnet50-bottleneck"]().eval()
    before, measured = count_macs(model, SHAPE), []

    def latency(candidate):
        measured.append(1)
        return 0.2 + 0.8 * (count_macs(candidate, SHAPE) / before) ** 1.5

    result = prune_model(model, EXAMPLE, reduction=0.4, metric=Metric.LATENCY, round_to=16, latency=latency)
    assert abs(result.reduction - 0.4) <= 0.02 and 2 <= len(measured) <= 10


def test_a_frozen_model_pruned_inside_no_grad_meets_the_goal():
    """torch-pruning follows autograd: a model loaded for inference (or used as a KD teacher) traced to an
    empty graph and was 'unreachable' at 0%. Its flags are left as they were."""
    model = CORPUS["squeeze-excite"]().eval().requires_grad_(False)
    with torch.no_grad():
        result = prune_model(model, EXAMPLE, round_to=8)
    assert abs(result.reduction - 0.5) <= 0.025
    assert not any(p.requires_grad for p in model.parameters())


def test_later_steps_reach_their_share_of_the_unpruned_models_macs():
    model = CORPUS["squeeze-excite"]().eval()
    before = count_macs(model, SHAPE)
    first = prune_model(model, EXAMPLE, reduction=0.25, round_to=8).model
    share = PruneStage(reduction=0.5, steps=2).reduction_now(first, 0.5, {"macs": before}, SHAPE)
    second = prune_model(first, EXAMPLE, reduction=share, round_to=8).model
    assert abs(count_macs(second, SHAPE) / before - 0.5) <= 0.025


def test_rounding_keeps_channel_multiples_and_global_ranking_meets_the_goal():
    model = create_model("resnet20", in_channels=1, input_size=(16, 16))
    result = prune_macs(model, round_to=8, global_ranking=True)
    convs = [m for n, m in result.model.named_modules() if isinstance(m, torch.nn.Conv2d) and n != "stem.0"]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert abs(result.remaining - 0.5) <= 0.025


@pytest.mark.parametrize("importance", list(Importance))
def test_every_importance_criterion_prunes_a_residual_model(importance, fashion):
    model = TOPOLOGIES["residual"]()
    if importance.needs_gradients:
        images = torch.randn(8, *SHAPE)
        torch.nn.functional.cross_entropy(model(images), torch.arange(8)).backward()
    pruned = prune_macs(model, importance=importance).model
    assert pruned.a[0].out_channels < 32 and pruned(EXAMPLE).shape == (1, 10)


def test_taylor_importance_uses_real_gradients(fashion):
    data = load_data(DataSpec(train_subset=576, selection=64, val_subset=64))
    model = build_model("cnn-tiny", data.info)
    from edgekd.data import make_loader

    accumulate_gradients(model, make_loader(data.train, data.info, batch_size=64, train=False), 2)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_pruned_architecture_is_rebuilt_from_sizes_and_weights():
    model = TOPOLOGIES["depthwise"]().eval()
    pruned = prune_macs(model).model
    rebuilt = resize_like(TOPOLOGIES["depthwise"](), layer_sizes(pruned), pruned.state_dict()).eval()
    x = torch.randn(3, *SHAPE)
    assert torch.equal(rebuilt(x), pruned(x))


def test_two_four_masks_survive_fine_tuning_and_export():
    torch.manual_seed(0)
    model = TOPOLOGIES["residual"]()
    names = semistructured.sparsify(model)
    assert names == ["a.0", "b.0", "head.fc"]  # the 1-channel stem cannot take 2:4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, *SHAPE)).sum().backward()
        optimizer.step()
    semistructured.bake(model)
    assert semistructured.is_two_four(model.a[0].weight.detach().numpy(), axis=1)
    sparse, dense = semistructured.onnx_two_four_weights(export_onnx(model.eval(), SHAPE))
    assert len(sparse) == 3 and len(dense) == 0  # BatchNorm folded into the convs keeps the zeros
    assert not semistructured.is_two_four(np.ones((4, 8)), axis=1)


# --- the stage on real data ----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load_data(DataSpec(train_subset=4000, selection=1000, val_subset=1000))
    model = build_model("cnn-small", data.info)
    fit(model, data, TrainConfig(epochs=2, lr=0.05), progress=False)
    return data, model



QUICK = RecoveryConfig(train=TrainConfig(epochs=1, lr=0.01, augment=None))


def test_prune_stage_meets_its_goal_recovers_and_restores(trained, tmp_path):
    data, model = trained
    ctx = stage_ctx(tmp_path, data)
    stage = PruneStage(reduction=0.5, round_to=4, steps=2, recovery=QUICK, latency_check=False)
    out, row = run_stage(stage, ctx, copy.deepcopy(model))
    pruned = out.model
    first, last = row.details["steps"]
    assert first["macs"] > last["macs"] and abs(last["macs_reduction"] - 0.5) <= 0.025
    assert last["accuracy_recovered"] > last["accuracy_pruned"]
    assert [c["batch"] for c in last["host_latency"]] == [1, 64]
    restored = stage.restore(Handoff(model=copy.deepcopy(model)), ctx).model
    assert accuracy(restored, ctx.selection_loader) == accuracy(pruned, ctx.selection_loader)


def test_a_pruned_model_slower_than_dense_is_refused(trained, tmp_path):
    data, model = trained
    ctx = stage_ctx(tmp_path, data)
    wide = build_model("cnn-wide", data.info)  # stands in for a pruned model that came out slower
    with HostComparer(export_onnx(model, ctx.input_shape), ctx.input_shape) as timer, \
            pytest.raises(PruneError, match="slower than the unpruned"):
        PruneStage().check_not_slower(wide, timer, ctx, ReportRow())


def test_jetson_target_gets_two_four_sparsity_with_notes(trained, tmp_path):
    data, model = trained
    ctx = stage_ctx(tmp_path, data, "jetson-orin")
    out, row = run_stage(PruneStage(reduction=0.3, round_to=4, recovery=QUICK), ctx, copy.deepcopy(model))
    pruned = out.model
    assert out.sparse_layers and row.details["steps"][-1]["kind"] == "2:4 sparsity"
    for name in out.sparse_layers:
        weight = dict(pruned.named_modules())[name].weight.detach().numpy()
        assert semistructured.is_two_four(weight, axis=1)
    assert any("cannot show the speed-up" in n for n in row.details["notes"])
    assert any("fewer than 256 channels" in n for n in row.details["notes"])


RECIPE = DISTILLED_ON_A_SUBSET + """  - stage: prune
    reduction: 0.4
    round_to: 4
    latency_check: false
    recovery: {train: {epochs: 1, lr: 0.01, augment: null}}
  - stage: export
"""


@pytest.mark.parametrize("target", ["host", "jetson-orin"])
def test_distill_prune_export_recipe_runs_from_the_cli(target, tmp_path):
    recipe = tmp_path / "prune.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    result = run_cli("compress", "--target", target, "--recipe", str(recipe), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    _, distill, prune, export = report["stages"]
    assert abs(1 - prune["macs"] / distill["macs"] - 0.4) <= 0.02
    assert export["details"]["parity"]["top1_agreement"] >= 0.999
    assert "### prune: steps" in (out / "report.md").read_text()
    if target == "jetson-orin":
        assert export["details"]["sparsity_2_4"]["verified_weights"] >= export["details"]["sparsity_2_4"]["layers"]
        assert "--sparsity=enable" in (out / "build_engine.sh").read_text()
    resumed = run_cli("compress", "--target", target, "--recipe", str(recipe), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "report.json").read_text())["stages"][2]["macs"] == prune["macs"]
