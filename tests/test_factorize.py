"""Low-rank factorization: exact at full rank, MACs counted right, layers skipped with reasons,
rank selection reaching its target, the stage and a recipe end to end."""

import copy
import json

import pytest
import torch
from torch import nn

from conftest import DISTILLED_ON_A_SUBSET, run_cli, run_stage, stage_ctx
from edgekd.data import DataSpec, load_data
from edgekd.distill.recovery import RecoveryConfig
from edgekd.errors import FactorizeError
from edgekd.factorize import select
from edgekd.factorize.decompose import decompose, svd_linear, tucker2
from edgekd.factorize.layers import Method, full_rank, macs_at_rank, rank_for_macs, why_not
from edgekd.measure import count_macs
from edgekd.models.loading import build_model
from edgekd.models.tracing import trace_layers
from edgekd.stages.base import Handoff
from edgekd.stages.factorize import FactorizeStage
from edgekd.train import TrainConfig, fit
from topologies import TOPOLOGIES


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


CONVS = [nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(6, 12, (3, 5), stride=(2, 1), padding=(1, 2), bias=False),
         nn.Conv2d(4, 8, 3, dilation=2, padding=2, stride=2)]


@pytest.mark.parametrize("conv", CONVS, ids=["3x3", "one-input-channel", "3x5-strided", "dilated"])
def test_full_rank_conv_decompositions_are_exact(conv):
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, 12, 12)
    expected = conv(x)
    layer = trace_layers(conv, x[:1])[0]
    for method in (Method.SPATIAL_SVD, Method.TUCKER2):
        assert relative_error(decompose(layer, method, full_rank(layer, method))(x), expected) < 1e-5
    assert relative_error(tucker2(conv, 1000, 1000)(x), expected) < 1e-5  # ranks beyond full are clamped


def test_full_rank_linear_svd_is_exact_and_truncation_is_optimal():
    torch.manual_seed(0)
    layer = nn.Linear(32, 20)
    x = torch.randn(5, 32)
    assert relative_error(svd_linear(layer, 20)(x), layer(x)) < 1e-5
    low = svd_linear(layer, 5)
    w = low[1].weight @ low[0].weight
    s = torch.linalg.svdvals(layer.weight.detach())
    assert torch.isclose((w - layer.weight).norm(), s[5:].norm(), rtol=1e-4)  # Eckart–Young


@pytest.mark.parametrize("method", [Method.SPATIAL_SVD, Method.TUCKER2])
def test_mac_accounting_matches_torch_flop_counter(method):
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1))
    layers = trace_layers(model, torch.zeros(1, 3, 16, 16))
    assert [layer.macs for layer in layers] == [count_macs(layer.module, layer.input_shape) for layer in layers]
    for layer in layers:
        for rank in (1, 4, full_rank(layer, method)):
            assert macs_at_rank(layer, method, rank) == count_macs(decompose(layer, method, rank), layer.input_shape)


def test_layers_that_cannot_gain_are_skipped_with_a_reason():
    layers = {layer.name: layer for layer in trace_layers(TOPOLOGIES["depthwise"](), torch.zeros(1, 1, 16, 16))}
    assert "depthwise" in why_not(layers["dw.0"], Method.SPATIAL_SVD, ())
    assert "no second spatial axis" in why_not(layers["expand.0"], Method.SPATIAL_SVD, ())
    assert why_not(layers["expand.0"], Method.TUCKER2, ()) is None
    assert why_not(layers["stem.0"], Method.SPATIAL_SVD, ("stem.*",)) == "listed in skip"
    tiny = trace_layers(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2))[0]
    assert not select.worthwhile(tiny, Method.SVD, 1)  # rank 1 costs 1·(2+2) MACs, as much as the layer


def test_ranks_are_rounded_to_the_channel_multiple():
    layer = trace_layers(nn.Sequential(nn.Conv2d(64, 64, 3)), torch.zeros(1, 64, 8, 8))[0]
    for fraction in (0.2, 0.5, 0.8):
        rank = rank_for_macs(layer, Method.SPATIAL_SVD, fraction, 16)
        assert rank % 16 == 0 and macs_at_rank(layer, Method.SPATIAL_SVD, rank) <= fraction * layer.macs
        assert macs_at_rank(layer, Method.SPATIAL_SVD, rank + 16) > fraction * layer.macs
    assert select.energy_rank(layer, Method.SPATIAL_SVD, 0.5, 16) % 16 == 0


def test_energy_rank_grows_with_energy():
    torch.manual_seed(0)
    layer = trace_layers(nn.Sequential(nn.Conv2d(16, 32, 3)), torch.zeros(1, 16, 8, 8))[0]
    ranks = [select.energy_rank(layer, Method.SPATIAL_SVD, e) for e in (0.5, 0.9, 0.99, 1.0)]
    assert ranks == sorted(ranks) and ranks[-1] == full_rank(layer, Method.SPATIAL_SVD)


@pytest.fixture(scope="module")
def trained():
    data = load_data(DataSpec(train_subset=4000, selection=1000, val_subset=1000))
    torch.manual_seed(0)  # the same model whichever tests this worker ran before
    model = build_model("cnn-small", data.info)
    fit(model, data, TrainConfig(epochs=2, lr=0.05), progress=False)
    return data, model



@pytest.mark.parametrize("selection", ["greedy", "uniform", "energy"])
def test_selection_reaches_the_mac_target_and_restores(selection, trained, tmp_path):
    data, model = trained
    ctx = stage_ctx(tmp_path, data)
    stage = FactorizeStage(selection=selection, reduction=0.4, score_images=500,
                           recovery=RecoveryConfig(train=TrainConfig(epochs=0)))
    out, row = run_stage(stage, ctx, copy.deepcopy(model))
    factorized, details = out.model, row.details
    assert 0.4 <= details["macs_reduction"] <= 0.46
    assert details["macs_after"] == count_macs(factorized, ctx.input_shape)
    assert [c["layer"] for c in details["layers"]] and all(c["rank"] or c["skipped"] for c in details["layers"])
    if selection == "greedy":
        assert any(c["accuracy_effect"] is not None for c in details["layers"])
    restored = stage.restore(Handoff(model=copy.deepcopy(model)), ctx).model
    x = torch.randn(4, *ctx.input_shape)
    assert torch.equal(restored.eval()(x), factorized.eval()(x))


def test_an_unreachable_target_is_refused(trained, tmp_path):
    data, model = trained
    with pytest.raises(FactorizeError, match="can save at most"):
        run_stage(FactorizeStage(reduction=0.95, selection="uniform"), stage_ctx(tmp_path, data), copy.deepcopy(model))


RECIPE = DISTILLED_ON_A_SUBSET + """  - stage: factorize
    conv: tucker2
    selection: greedy
    reduction: 0.3
    score_images: 500
    recovery: {train: {epochs: 1, lr: 0.01, augment: null}}
  - stage: export
"""


def test_distill_factorize_export_recipe_runs_from_the_cli(tmp_path):
    recipe = tmp_path / "factorize.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    result = run_cli("compress", "--target", "host", "--recipe", str(recipe), "--out", str(out))
    assert result.returncode == 0, result.stderr
    _, distill, factorize, export = json.loads((out / "report.json").read_text())["stages"]
    assert factorize["macs"] <= 0.7 * distill["macs"]
    assert export["details"]["parity"]["top1_agreement"] >= 0.999
    resumed = run_cli("compress", "--target", "host", "--recipe", str(recipe), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
