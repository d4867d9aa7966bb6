"""The CUDA paths of training, run on a real GPU (``benchmarks/gpu_check.py`` runs this file there).

Here, without a GPU, each test is skipped with its reason; the CPU side of the same code is tested in
test_train.py and test_device.py.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FailsAt

from edgekd.data import Augment, BatchTransform, DataSpec, load_data, make_loader
from edgekd.errors import TrainingDivergedError
from edgekd.models import create_model
from edgekd.train import GPU_READ_EVERY, TrainConfig, accuracy, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (run on the GPU machine by benchmarks/gpu_check.py)")
CUDA = torch.device("cuda", 0)


@pytest.fixture(scope="module")
def small():
    return load_data(DataSpec(train_subset=2200, selection=200, val_subset=500))


def trained(data, device: str, *, epochs: int = 2, objective=None):
    torch.manual_seed(0)
    model = create_model("cnn-tiny", in_channels=1, input_size=(28, 28))
    result = fit(model, data, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, device=device),
                 objective=objective, progress=False)
    return model, result


def test_gpu_batches_are_the_cpus_batches_made_there(small):
    """Training batches normalized and augmented on the GPU equal the CPU's (same random draws)."""
    batch = small.train.__getitems__(list(range(64)))
    cpu = BatchTransform(small.info, Augment(), seed=3)(batch)
    gpu = BatchTransform(small.info, Augment(), seed=3, device=CUDA)(batch)
    assert gpu[0].device.type == "cuda" and gpu[1].device.type == "cuda"
    assert torch.allclose(gpu[0].cpu(), cpu[0], atol=1e-6) and torch.equal(gpu[1].cpu(), cpu[1])
    loader = make_loader(small.train, small.info, batch_size=64, train=True, augment=Augment(), device=CUDA)
    assert next(iter(loader))[0].device.type == "cuda"


def test_training_on_cuda_learns_like_the_cpu_and_gives_the_model_back(small):
    gpu_model, gpu = trained(small, "cuda")
    cpu_model, cpu = trained(small, "cpu")
    assert next(gpu_model.parameters()).device.type == "cpu"
    loader = make_loader(small.selection, small.info, batch_size=256, train=False)
    assert gpu.accuracy == pytest.approx(accuracy(gpu_model, loader, device=CUDA), abs=0.02)  # bf16 vs float32 noise
    assert gpu.accuracy >= cpu.accuracy - 0.05, (gpu.accuracy, cpu.accuracy)
    assert gpu.history[-1]["loss"] < gpu.history[0]["loss"]


def test_divergence_on_cuda_names_the_first_bad_step(small):
    """The GPU reads the loss every GPU_READ_EVERY steps, but the error names the step it first went bad."""
    step = 3
    assert step < GPU_READ_EVERY
    with pytest.raises(TrainingDivergedError, match=rf"loss became nan at epoch 1, step {step};"):
        trained(small, "cuda", epochs=1, objective=FailsAt(step, "nan"))
