"""Every scoring and calibration loop outside training runs on the run's device, and gives its model back.

There is no GPU here, so the run's device is replaced by ``cpu:0``: a device object distinct from the
``cpu`` the models live on that still computes. Every model and batch sent to it is recorded (and
really moved), so each test shows that the loop asks :mod:`edgekd.device` for the device, moves the
model and every batch there, returns the model (with its gradients) to the CPU, and computes exactly
what it computes on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd import device as devices
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.distill.cache import compute_logits, teacher_logits
from edgekd.distill.recovery import RecoveryConfig
from edgekd.factorize import select
from edgekd.factorize.layers import Method
from edgekd.factorize.lowrank import eligible_layers
from edgekd.models import create_model
from edgekd.prune.importance import accumulate_gradients
from edgekd.quantize.qat import (calibrated_fake_quantizers, fold_batchnorm, quantization_aware_training,
                                sign_fake_quantizers)
from edgekd.quantize.scheme import Scheme
from edgekd.train import TrainConfig, accuracy

FAKE = torch.device("cpu", 0)
CPU = torch.device("cpu")


class Moves:
    """What was sent to FAKE: model classes, and the shapes of tensors other than a model's own."""

    def __init__(self):
        self.models: list[str] = []
        self.batches: list[tuple[int, ...]] = []
        self.inside_model_move = 0


def to_fake(args, kwargs) -> bool:
    return any(isinstance(a, torch.device) and a == FAKE for a in (*args, kwargs.get("device")))


@pytest.fixture
def moves(monkeypatch) -> Moves:
    """The run's device is FAKE; every model and tensor moved there is recorded."""
    moves, module_to, tensor_to = Moves(), nn.Module.to, torch.Tensor.to

    def module_moved(self, *args, **kwargs):
        if to_fake(args, kwargs):
            moves.models.append(type(self).__name__)
        moves.inside_model_move += 1
        try:
            return module_to(self, *args, **kwargs)
        finally:
            moves.inside_model_move -= 1

    def tensor_moved(self, *args, **kwargs):
        if to_fake(args, kwargs) and not moves.inside_model_move:
            moves.batches.append(tuple(self.shape))
        return tensor_to(self, *args, **kwargs)

    monkeypatch.setattr(devices, "current", lambda: FAKE)
    monkeypatch.setattr(nn.Module, "to", module_moved)
    monkeypatch.setattr(torch.Tensor, "to", tensor_moved)
    return moves


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is as fast on an idle machine and far faster on the loaded, shared one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return load_data(DataSpec(train_subset=142, selection=14, val_subset=64))  # 128 training images


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn-tiny", in_channels=1, input_size=(28, 28))


def on_cpu(model: nn.Module) -> bool:
    return all(t.device == CPU for t in (*model.parameters(), *model.buffers()))


def test_placed_moves_the_model_there_and_back(moves):
    model = tiny_model()
    with devices.placed(model) as device:
        assert device == FAKE
    assert moves.models == [type(model).__name__] and on_cpu(model)


def test_teacher_logits_are_computed_on_the_run_device(moves, tiny, tmp_path):
    teacher = tiny_model()
    logits = teacher_logits(teacher, tiny, tmp_path)
    assert moves.models[0] == type(teacher).__name__ and on_cpu(teacher)
    assert [shape[0] for shape in moves.batches] == [len(tiny.train)]  # one batch of 128 images (batch size 512)
    loader = make_loader(tiny.train, tiny.info, batch_size=512, train=False)
    assert (compute_logits(teacher, loader, device=CPU) == logits).all()  # the CPU computes the same numbers


def test_taylor_gradients_are_computed_on_the_run_device_and_come_back(moves, tiny):
    loader = make_loader(tiny.train, tiny.info, batch_size=32, train=False)
    model, reference = tiny_model(), tiny_model()
    accumulate_gradients(model, loader, 2)
    assert moves.models == [type(model).__name__] and on_cpu(model)
    assert [shape[0] for shape in moves.batches] == [32, 32, 32, 32]  # images and labels of two batches
    accumulate_gradients(reference, loader, 2, device=CPU)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert p.grad.device == CPU and torch.equal(p.grad, q.grad)


def test_greedy_factorization_scores_on_the_run_device(moves, tiny):
    loader = make_loader(tiny.selection, tiny.info, batch_size=64, train=False)
    model = tiny_model()
    layers, _ = eligible_layers(model, torch.zeros(1, 1, 28, 28), Method.TUCKER2, True, ())
    layers = {name: layers[name] for name in ("block2.0", "classifier.1")}  # a conv and a linear
    scores = select.sensitivity(model, layers, (0.25, 0.5), lambda m: accuracy(m, loader))
    assert moves.models[0] == type(model).__name__ and "Sequential" in moves.models  # the model, then each cut
    assert on_cpu(model) and all(layer.module is model.get_submodule(name) for name, (layer, _) in layers.items())
    assert set(scores) == set(layers) and all(scores.values())
    assert select.sensitivity(model, layers, (0.25, 0.5), lambda m: accuracy(m, loader, device=CPU),
                              device=CPU) == scores


def test_qat_calibrates_on_the_run_device_and_returns_on_the_cpu(moves, tiny, monkeypatch):
    calibration = make_loader(tiny.train, tiny.info, batch_size=64, train=False)
    model = tiny_model().eval()
    quantized, result = quantization_aware_training(model, tiny, calibration, scheme=Scheme.TENSORRT,
                                                    config=RecoveryConfig(train=TrainConfig(epochs=0)),
                                                    progress=False)
    assert result is None and type(model).__name__ in moves.models
    assert len(moves.batches) >= 2 and {shape[0] for shape in moves.batches} == {64}  # calibration batches
    assert on_cpu(quantized) and on_cpu(model)
    monkeypatch.setattr(devices, "current", lambda: CPU)  # the same calibration on the CPU: the same quantizers
    reference = calibrated_fake_quantizers(fold_batchnorm(tiny_model().eval()), calibration, Scheme.TENSORRT)
    sign_fake_quantizers(reference)
    images = next(iter(calibration))[0]
    assert torch.equal(quantized.eval()(images), reference.eval()(images))
