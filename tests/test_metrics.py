"""The one judging path: built-in metrics on hand-made numbers, the user's callables, identical scores on PyTorch
and ONNX outputs, one clear error for a metric, a loss or outputs that misbehave; dense distillation losses."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from edgekd.data.datasets import TensorImages
from edgekd.data.shapes import make_shapes
from edgekd.distill import LOSSES, LossSpec
from edgekd.distill.dense import OutputKD
from edgekd.distill.losses import KD, Outputs
from edgekd.distill.objective import DistillObjective
from edgekd.errors import ConfigError, UnknownNameError, UserFunctionError
from edgekd.judge import judge
from edgekd.metrics import METRICS, resolve_metric
from edgekd.onnx_export import check_parity, export_onnx
from edgekd.supervised import SupervisedLoss


class Fixed(nn.Module):
    """Returns the scores it was built with, whatever the input (batch i gets rows i*B:(i+1)*B)."""

    def __init__(self, scores: torch.Tensor):
        super().__init__()
        self.scores, self.seen = scores, 0

    def forward(self, x):
        out = self.scores[self.seen:self.seen + len(x)]
        self.seen += len(x)
        return out


def loader(targets: torch.Tensor, batch: int = 2) -> DataLoader:
    images = torch.zeros(len(targets), 1, 4, 4)
    return DataLoader(list(zip(images, targets)), batch_size=batch)


def test_miou_is_the_mean_over_classes_present_in_prediction_or_target():
    # 1 image of 2×2 pixels, 4 classes; class 3 is in neither prediction nor target and is left out.
    target = torch.tensor([[[0, 0], [1, 2]]])
    predicted = torch.tensor([[[0, 1], [1, 1]]])
    scores = F.one_hot(predicted, 4).permute(0, 3, 1, 2).float()
    # class 0: I=1, U=2; class 1: I=1, U=3; class 2: I=0, U=1 → (0.5 + 1/3 + 0) / 3
    assert judge(Fixed(scores), loader(target, 1), "miou") == pytest.approx((0.5 + 1 / 3) / 3)


def test_miou_does_not_score_ignored_pixels():
    target = torch.tensor([[[0, -100], [1, 255]]])
    scores = F.one_hot(torch.tensor([[[0, 1], [1, 0]]]), 4).permute(0, 3, 1, 2).float()
    assert judge(Fixed(scores), loader(target, 1), "miou") == 1.0


def test_top1_and_negative_mse_on_known_numbers():
    labels = torch.tensor([0, 1, 1, 0])
    scores = torch.tensor([[2.0, 1], [0, 1], [3, 1], [1, 0]])  # 3 of 4 right
    assert judge(Fixed(scores), loader(labels), "top1") == 0.75
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert judge(Fixed(values + torch.tensor([[1.0], [0], [0], [-1]])), loader(values), "mse") == -0.5
    assert METRICS["mse"].label == "−MSE"


def test_top1_refuses_targets_that_do_not_match_the_outputs_shape():
    scores, masks = torch.randn(4, 3, 8, 8), torch.zeros(4, 1, 8, 8, dtype=torch.long)  # would broadcast to 4x the count
    with pytest.raises(UserFunctionError, match=r"metric top1 needs .* batch 0 has outputs \(4, 3, 8, 8\) and targets "
                                                r"\(4, 1, 8, 8\)"):
        judge(nn.Identity(), [(scores, masks)], "top1")


def test_losses_with_their_own_cross_entropy_refuse_a_users_loss():
    def mine(outputs, targets):
        return outputs.sum()

    dkd = LOSSES["dkd"](LOSSES["dkd"].Config())
    with pytest.raises(ConfigError, match=r"DKD train with their own cross-entropy .* use your loss \(mine\)"):
        DistillObjective(nn.Identity(), [(1.0, dkd)], label_weight=0.0, supervised=mine)
    DistillObjective(nn.Identity(), [(1.0, dkd)], label_weight=0.0)  # with cross-entropy it is fine


def test_a_metric_name_that_does_not_exist_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown metric 'mIoU'.*Known metrics: miou, mse, top1"):
        resolve_metric("mIoU")


def test_a_lower_is_better_callable_is_negated_and_labelled_so():
    def mae(outputs, targets):
        return sum(float((o - t).abs().sum()) for o, t in zip(outputs, targets)) / 4

    mae.higher_is_better = False
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    metric = resolve_metric(mae)
    assert metric.label == "−mae" and judge(Fixed(values + 1), loader(values), metric) == -1.0


@pytest.mark.parametrize("body,message", [
    (lambda o, t: 1 / 0 if len(o) > 1 or float(t[0][0]) == 3.0 else 1.0,
     r"metric bad raised ZeroDivisionError: division by zero \(on batch 1 of 2\)"),
    (lambda o, t: float("nan"), r"metric bad returned nan, not a finite number \(on batch 0 of 2\)"),
    (lambda o, t: "high", r"metric bad returned a str, not a finite number \(on batch 0 of 2\)"),
])
def test_a_metric_that_raises_or_returns_no_number_is_one_line_naming_it_and_the_batch(body, message):
    def bad(outputs, targets):
        return body(outputs, targets)

    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    with pytest.raises(UserFunctionError, match=message):
        judge(Fixed(values), loader(values), bad)


def test_a_loss_that_raises_or_returns_nan_is_one_line_naming_it():
    def my_loss(outputs, targets):
        raise ValueError("shapes do not match")

    with pytest.raises(UserFunctionError, match="loss my_loss raised ValueError: shapes do not match"):
        SupervisedLoss(my_loss)(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(UserFunctionError, match="loss <lambda> returned nan"):
        SupervisedLoss(lambda o, t: torch.tensor(float("nan")))(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(UserFunctionError, match="cross-entropy, the default loss, needs a model that returns one "
                                                "tensor.*returns a dict"):
        SupervisedLoss()({"a": torch.zeros(2, 3)}, torch.zeros(2, dtype=torch.long))


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.classes, self.box = nn.Linear(8, 4), nn.Linear(8, 2)

    def forward(self, x):
        f = self.conv(x).mean((2, 3))
        return {"classes": self.classes(f), "box": self.box(f)}


def centre_error(outputs, targets):
    return -sum(float((o["box"] - t[:, :2]).abs().mean()) for o, t in zip(outputs, targets)) / len(outputs)


def test_a_users_metric_scores_pytorch_and_its_onnx_export_alike(tmp_path):
    data = make_shapes(64, size=8, seed=3)
    targets = torch.rand(64, 2)
    batches = DataLoader(list(zip(data.images.float() / 255, targets)), batch_size=16)
    torch.manual_seed(0)
    model = Heads().eval()
    path = tmp_path / "heads.onnx"
    path.write_bytes(export_onnx(model, (3, 8, 8)).SerializeToString())
    on_torch, on_onnx = judge(model, batches, centre_error), judge(path, batches, centre_error)
    assert on_onnx == pytest.approx(on_torch, abs=1e-6) and on_torch < -0.05
    parity = check_parity(model, path, batches, metric=centre_error)
    assert parity.accuracy == pytest.approx(on_onnx) and parity.max_abs_diff < 1e-4


def test_outputs_that_change_structure_between_pytorch_and_onnx_are_refused(tmp_path):
    data = TensorImages(torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.zeros(8, 2))
    batches = DataLoader(list(zip(data.images.float(), data.labels)), batch_size=4)
    path = tmp_path / "heads.onnx"
    path.write_bytes(export_onnx(Heads().eval(), (3, 8, 8)).SerializeToString())

    class Renamed(Heads):
        def forward(self, x):
            out = super().forward(x)
            return {"scores": out["classes"], "box": out["box"]}

    with pytest.raises(UserFunctionError, match=r"outputs differ between PyTorch and ONNX on batch 0: PyTorch "
                                                r"\{'scores': \(4, 4\), 'box': \(4, 2\)\}, ONNX \{'classes'"):
        check_parity(Renamed().eval(), path, batches)


def test_kd_on_a_segmenter_is_hinton_kd_per_pixel():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    labels = torch.randint(0, 4, (2, 3, 5))
    t = 2.0
    per_pixel = (F.softmax(teacher / t, 1) * (F.log_softmax(teacher / t, 1) - F.log_softmax(student / t, 1))).sum(1)
    expected = 0.9 * t**2 * per_pixel.mean() + 0.1 * F.cross_entropy(student, labels)
    loss = KD(KD.Config())(Outputs(student), Outputs(teacher), labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    flat = lambda z: z.permute(0, 2, 3, 1).reshape(-1, 4)  # noqa: E731  (each pixel a sample: classification KD)
    as_classifier = KD(KD.Config())(Outputs(flat(student)), Outputs(flat(teacher)), labels.flatten())
    assert loss.item() == pytest.approx(as_classifier.item(), rel=1e-5)


def test_output_distillation_takes_kl_on_class_scores_and_mse_or_l1_on_a_box_head():
    torch.manual_seed(0)
    s = {"classes": torch.randn(4, 3), "box": torch.rand(4, 2)}
    t = {"classes": torch.randn(4, 3), "box": torch.rand(4, 2)}
    labels = torch.randint(0, 3, (4,))
    kl = F.kl_div(F.log_softmax(s["classes"] / 2, 1), F.log_softmax(t["classes"] / 2, 1), reduction="batchmean",
                  log_target=True) * 4
    loss = LossSpec(name="outputs", alpha=1.0).build()
    assert loss(Outputs(s), Outputs(t), labels).item() == pytest.approx((kl + F.mse_loss(s["box"], t["box"])).item(),
                                                                       rel=1e-5)
    l1 = OutputKD(OutputKD.Config(alpha=1.0, kinds={"box": "l1"}))
    assert l1(Outputs(s), Outputs(t), labels).item() == pytest.approx((kl + F.l1_loss(s["box"], t["box"])).item(),
                                                                     rel=1e-5)
    mixed = OutputKD(OutputKD.Config(alpha=0.5))
    mixed.label_loss = SupervisedLoss(lambda o, y: F.cross_entropy(o["classes"], y))
    expected = 0.5 * (kl + F.mse_loss(s["box"], t["box"])) + 0.5 * F.cross_entropy(s["classes"], labels)
    assert mixed(Outputs(s), Outputs(t), labels).item() == pytest.approx(expected.item(), rel=1e-5)
    assert math.isfinite(loss(Outputs(s), Outputs(t), labels).item())


def test_the_shapes_dataset_is_deterministic_and_has_every_class():
    a, b, c = make_shapes(50, seed=7), make_shapes(50, seed=7), make_shapes(50, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    share = torch.bincount(a.labels.flatten(), minlength=4).float() / a.labels.numel()
    assert a.images.dtype == torch.uint8 and a.labels.shape == (50, 32, 32)
    assert 0.7 < share[0] < 0.95 and (share[1:] > 0.02).all()  # measured: background 0.83, shapes 0.05-0.08 each


def test_taylor_importance_on_a_two_headed_model_is_one_clear_error():
    from edgekd.prune.importance import accumulate_gradients

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 3)

        def forward(self, x):
            return {"classes": self.body(x), "box": self.body(x)[:, :2]}

    batches = [(torch.randn(5, 4), torch.randn(5, 3))]
    with pytest.raises(ConfigError, match="taylor importance .* prune it with importance l1 or l2"):
        accumulate_gradients(TwoHeads(), batches, 1, device=torch.device("cpu"))


def test_a_changed_user_callable_of_the_same_name_is_a_different_run():
    import functools

    from edgekd.metrics import callable_fingerprint
    from edgekd.supervised import SupervisedLoss

    namespace = {}
    exec("def score(outputs, targets):\n    return 1.0\n", namespace)
    first = namespace["score"]
    exec("def score(outputs, targets):\n    return 2.0\n", namespace)  # the same name, edited (no source file)
    second = namespace["score"]
    assert callable_fingerprint(first) != callable_fingerprint(second)
    assert callable_fingerprint(first).startswith("score:") and callable_fingerprint(first) == callable_fingerprint(first)
    assert resolve_metric(first).fingerprint() != resolve_metric(second).fingerprint()
    before = callable_fingerprint(first)
    first.points_per_unit = 10.0  # a declared attribute changes what a budget means
    assert callable_fingerprint(first) != before
    weighted = lambda outputs, targets, w: w  # noqa: E731
    assert callable_fingerprint(functools.partial(weighted, w=1)) != callable_fingerprint(functools.partial(weighted, w=2))
    assert SupervisedLoss(None).fingerprint() == "cross-entropy"
    assert SupervisedLoss(second).fingerprint() == callable_fingerprint(second)
