"""Each loss: zero when student equals teacher, larger when they differ, gradients only where they belong."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgekd.data import DataInfo
from edgekd.distill import LOSSES, FeatureTaps, LossSpec, Outputs
from edgekd.distill.lit import LITObjective, pair_blocks
from edgekd.distill.objective import DistillObjective, Ensemble
from edgekd.errors import EdgekdError, UnknownNameError
from edgekd.models import create_model
from edgekd.models.loading import build_model

torch.manual_seed(0)
FEATS = {"a": torch.randn(8, 16, 7, 7), "b": torch.randn(8, 32)}
LOGITS = torch.randn(8, 10)
LABELS = torch.randint(0, 10, (8,))
SPECS = {
    "kd": dict(alpha=1.0),
    "dkd": dict(),
    "fitnets": dict(pairs=[["a", "a"]]),
    "at": dict(pairs=[["a", "a"]]),
    "rkd": dict(student_layer="b", teacher_layer="b"),
}


def outputs(logits, feats):
    return Outputs(logits, dict(feats))


def loss_value(name, student, teacher):
    loss = LossSpec(name=name, **SPECS[name]).build()
    loss.setup(student, teacher)
    return loss, loss(student, teacher, LABELS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_loss_is_minimal_when_student_equals_teacher_and_grows_otherwise(name):
    same = outputs(LOGITS, FEATS)
    _, at_equal = loss_value(name, same, same)
    differ = outputs(LOGITS.flip(0) * 3, {k: v.flip(0) * 2 + 1 for k, v in FEATS.items()})
    _, apart = loss_value(name, differ, same)
    floor = F.cross_entropy(LOGITS, LABELS).item() if name == "dkd" else 0.0  # DKD includes CE
    assert at_equal.item() == pytest.approx(floor, abs=1e-5)
    assert apart.item() > at_equal.item() + 1e-3


def test_every_registered_loss_is_covered():
    assert set(LOSSES) == set(SPECS) | {"lit"}


def test_kd_is_t_squared_scaled_kl_mixed_with_ce():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    for temperature in (1.0, 4.0):
        kd = LossSpec(name="kd", temperature=temperature, alpha=0.7).build()
        p_t = F.softmax(t / temperature, 1)
        kl = (p_t * (p_t.log() - F.log_softmax(s / temperature, 1))).sum(1).mean()
        labels = torch.tensor([0, 1, 2, 3])
        expected = 0.7 * temperature**2 * kl + 0.3 * F.cross_entropy(s, labels)
        assert kd(Outputs(s), Outputs(t), labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_fitnets_regressor_maps_narrow_student_to_teacher_shape():
    loss = LossSpec(name="fitnets", pairs=[["s", "t"]]).build()
    student, teacher = Outputs(LOGITS, {"s": torch.randn(8, 8, 14, 14)}), Outputs(LOGITS, {"t": torch.randn(8, 16, 7, 7)})
    loss.setup(student, teacher)
    assert loss(student, teacher, LABELS).item() > 0
    assert sum(p.numel() for p in loss.parameters()) > 0


GRAY = DataInfo("g", 10, 1, (28, 28), (0.5,), (0.5,))


@pytest.mark.parametrize("spec", [dict(name="kd"), dict(name="dkd"), dict(name="fitnets", pairs=[["block2", "block2"]]),
                                  dict(name="at", pairs=[["block2", "block3"]]),
                                  dict(name="rkd", student_layer="block3", teacher_layer="block3")])
def test_gradients_reach_only_the_student_and_regressors(spec):
    teacher, student = build_model("cnn", GRAY), build_model("cnn-tiny", GRAY)
    images = torch.randn(8, 1, 28, 28)
    objective = DistillObjective(teacher, [(1.0, LossSpec(**spec).build())], label_weight=1.0)
    objective.setup(student, images)
    loss, logits = objective(student, images, LABELS)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is not None for p in objective.parameters())
    assert not any(k.startswith("teacher") for k in objective.state_dict())


def test_ensemble_averages_softened_distributions():
    a, b = create_model("cnn-tiny", in_channels=1).eval(), create_model("cnn-small", in_channels=1).eval()
    x = torch.randn(4, 1, 28, 28)
    out = Ensemble([a, b], temperature=3.0)(x)
    expected = (F.softmax(a(x) / 3, 1) + F.softmax(b(x) / 3, 1)) / 2
    assert torch.allclose(F.softmax(out / 3, 1), expected, atol=1e-6)


def test_taps_read_a_user_model_by_module_names():
    from user_code import TinyNet

    model = TinyNet()
    with FeatureTaps(model, ["features.0", "head"]) as taps:
        model(torch.randn(2, 1, 16, 16))
    assert taps.outputs["features.0"].shape == (2, 8, 16, 16) and taps.outputs["head"].shape == (2, 10)
    model(torch.randn(1, 1, 16, 16))  # hooks are gone after the block
    assert taps.outputs["head"].shape == (2, 10)


def test_unknown_tap_lists_nearest_names():
    from user_code import TinyNet

    with pytest.raises(EdgekdError, match=r"TinyNet has no module 'feature.0'; nearest: features.0"):
        FeatureTaps(TinyNet(), ["feature.0"])


def test_lit_pairs_blocks_by_name_and_refuses_what_cannot_pair():
    teacher, student = build_model("resnet20", GRAY), build_model("resnet8", GRAY)
    assert pair_blocks(student, teacher, None) == [("layer1", "layer1"), ("layer2", "layer2"), ("layer3", "layer3")]
    mobilenet = build_model("mobilenetv2-0.35", GRAY)
    with pytest.raises(EdgekdError, match=r"cannot pair 5 student blocks \(stages.1, .*\) with 3 teacher blocks \(layer1"):
        pair_blocks(mobilenet, teacher, None)
    with pytest.raises(EdgekdError, match="has no module 'layer9'"):
        pair_blocks(student, teacher, (("layer9", "layer1"),))


def test_lit_trains_student_blocks_from_teacher_inputs():
    teacher, student = build_model("resnet14", GRAY), build_model("resnet8", GRAY)
    images = torch.randn(8, 1, 28, 28)
    lit = LITObjective(teacher, student, pair_blocks(student, teacher, None), images)
    loss, logits = lit(student, images, LABELS)
    loss.backward()
    assert logits is None and math.isfinite(loss.item())
    assert student.layer2[0].conv1.weight.grad is not None
    assert student.stem[0].weight.grad is None and student.fc.weight.grad is None  # only blocks learn
    assert all(p.grad is None for p in teacher.parameters())


def test_unknown_loss_name():
    with pytest.raises(Exception, match="unknown loss 'kdd'. Did you mean 'kd'"):
        LossSpec(name="kdd")
    with pytest.raises(UnknownNameError):
        from edgekd.distill import config_class

        config_class("nope")
