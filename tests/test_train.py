import pytest
import torch

from conftest import FailsAt

from edgekd.data import DataSpec, load_data, make_loader
from edgekd.errors import CheckpointError, TrainingDivergedError
from edgekd.models.loading import build_model
from edgekd.train import TrainConfig, accuracy, fit


@pytest.fixture(scope="module")
def small():
    return load_data(DataSpec(train_subset=5000, selection=1000, val_subset=1000))


def test_training_learns_from_real_data(small):
    model = build_model("cnn-small", small.info)
    result = fit(model, small, TrainConfig(epochs=3, lr=0.1), progress=False)
    assert result.accuracy >= 0.68  # measured 0.703-0.735 over 7 seeds (mean 0.718, sd 0.011); chance is 0.10
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["images_per_second"] > 0


def test_interrupted_training_resumes_to_the_same_weights(small, tmp_path):
    config = TrainConfig(epochs=2, lr=0.05, seed=3)
    torch.manual_seed(0)
    straight = build_model("cnn-tiny", small.info)
    fit(straight, small, config, progress=False)

    ckpt = tmp_path / "train.pt"
    torch.manual_seed(0)
    model = build_model("cnn-tiny", small.info)
    steps_per_epoch = -(-4000 // config.batch_size)
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 2
        fit(model, small, config, objective=FailsAt(steps_per_epoch + 3, "kill"), checkpoint=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1

    torch.manual_seed(0)
    resumed = build_model("cnn-tiny", small.info)
    result = fit(resumed, small, config, checkpoint=ckpt, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4)


def test_checkpoint_of_other_settings_is_not_resumed(small, tmp_path):
    ckpt = tmp_path / "train.pt"
    fit(build_model("cnn-tiny", small.info), small, TrainConfig(epochs=1, lr=0.05), checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match="other training settings"):
        fit(build_model("cnn-tiny", small.info), small, TrainConfig(epochs=1, lr=0.01), checkpoint=ckpt,
            progress=False)


def test_nan_loss_stops_with_the_last_good_checkpoint_kept(small, tmp_path):
    ckpt = tmp_path / "train.pt"
    config = TrainConfig(epochs=2, lr=0.05)
    steps_per_epoch = -(-4000 // config.batch_size)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 2.*last good checkpoint.*lower the"):
        fit(build_model("cnn-tiny", small.info), small, config, objective=FailsAt(steps_per_epoch + 2, "nan"),
            checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_accuracy_is_top1(small):
    class Always3(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 10)
            out[:, 3] = 1
            return out

    loader = make_loader(small.selection, small.info, batch_size=100, train=False)
    assert accuracy(Always3(), loader) == pytest.approx((small.selection.labels == 3).float().mean().item())


def test_training_top1_is_counted_for_class_scores_only():
    from edgekd.train import Tally

    tally = Tally(torch.device("cpu"))
    tally.add(torch.tensor(1.0), torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 1]))
    assert tally.accuracy() == pytest.approx(2 / 3) and tally.read()["acc"] == "acc 0.667  "
    dense = Tally(torch.device("cpu"))  # a segmenter's (N, C, H, W) scores against (N, H, W) masks: no top-1
    dense.add(torch.tensor(1.0), torch.zeros(2, 4, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    assert dense.accuracy() is None and dense.read()["acc"] == "" and dense.loss() == 1.0
