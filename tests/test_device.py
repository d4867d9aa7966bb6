"""The device choice (auto | cpu | cuda | cuda:N), mixed precision and NCCL, tested on a machine without a GPU.

The CUDA paths are pure functions of what the machine has (:class:`edgekd.device.Machine`), and the
training loop's autocast / gradient-scaler path is exercised with CPU autocast.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from edgekd import device as devices
from edgekd.data import DataSpec, load_data, make_loader
from edgekd.distributed import choose_backend
from edgekd.errors import DeviceError
from edgekd.models import create_model
from edgekd.train import CrossEntropy, Precision, TrainConfig, accuracy, fit, make_optimizer, train_epoch

NO_GPU, TWO_GPUS = devices.Machine(cuda_devices=0), devices.Machine(cuda_devices=2, local_rank=1, bf16=True)
# What a machine without a GPU does with "auto" and "cuda"; tests/test_cuda.py covers a machine with one.
without_a_gpu = pytest.mark.skipif(torch.cuda.is_available(),
                                   reason="asserts what happens without a GPU, and this machine has a CUDA GPU")


@pytest.mark.parametrize("spec,machine,expected", [
    ("auto", NO_GPU, "cpu"), ("cpu", TWO_GPUS, "cpu"), ("auto", TWO_GPUS, "cuda:1"), ("cuda", TWO_GPUS, "cuda:1"),
    ("cuda:0", TWO_GPUS, "cuda:0"), ("CUDA:1", TWO_GPUS, "cuda:1"),
    ("auto", devices.Machine(cuda_devices=2, local_rank=3), "cuda:1"),
])
def test_device_resolution(spec, machine, expected):
    assert devices.resolve(spec, machine) == torch.device(expected)


@pytest.mark.parametrize("spec,machine,message", [
    ("cuda", NO_GPU, "sees no CUDA GPU"), ("cuda:0", NO_GPU, "sees no CUDA GPU"),
    ("cuda:2", TWO_GPUS, "has 2 CUDA GPU"), ("gpu", TWO_GPUS, "unknown device 'gpu'; use auto, cpu"),
])
def test_impossible_devices_are_one_clear_error(spec, machine, message):
    with pytest.raises(DeviceError, match=message):
        devices.resolve(spec, machine)


def test_mixed_precision_choice():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert devices.amp_dtype(cuda, bf16=True) is torch.bfloat16
    assert devices.amp_dtype(cuda, bf16=False) is torch.float16
    assert devices.amp_dtype(cuda, bf16=True, enabled=False) is None
    assert devices.amp_dtype(cpu, bf16=True) is None  # the CPU trains in float32, as before
    assert devices.needs_grad_scaler(torch.float16) and not devices.needs_grad_scaler(torch.bfloat16)
    assert not devices.needs_grad_scaler(None)


def test_nccl_for_gpus_one_process_each():
    assert choose_backend(torch.device("cpu"), 4, 0) == "gloo"
    assert choose_backend(torch.device("cuda", 1), 2, 2) == "nccl"
    with pytest.raises(DeviceError, match="one GPU per process; use --nproc 2"):
        choose_backend(torch.device("cuda", 0), 4, 2)


@without_a_gpu
def test_run_device_is_scoped_and_checked_on_entry():
    assert devices.current() == torch.device("cpu")  # auto, here
    with devices.use("cpu") as device:
        assert device == devices.current() == torch.device("cpu")
    with pytest.raises(DeviceError, match="no CUDA"), devices.use("cuda"):
        pass
    assert devices.RUN_DEVICE.get() == "auto"


def test_train_config_device_is_validated_and_not_part_of_the_fingerprint():
    assert TrainConfig(device="cuda:3").fingerprint() == TrainConfig().fingerprint() == TrainConfig(amp=False).fingerprint()
    assert "device" not in TrainConfig(device="cpu").model_dump()
    with pytest.raises(ValidationError):
        TrainConfig(device="tpu")


@pytest.fixture(scope="module")
def tiny():
    return load_data(DataSpec(train_subset=256, val_subset=128))


@without_a_gpu
def test_explicit_cpu_trains_exactly_as_before_and_cuda_is_refused(tiny):
    def trained(**device):
        torch.manual_seed(0)
        model = create_model("cnn-tiny", in_channels=1, input_size=(28, 28))
        fit(model, tiny, TrainConfig(epochs=1, batch_size=64, **device), progress=False)
        return model

    default, cpu = trained(), trained(device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), cpu.state_dict().values()))
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        trained(device="cuda")


def test_autocast_and_gradient_scaler_path_trains(tiny):
    """The CUDA float16 path (autocast + GradScaler), run with CPU autocast: the loss still falls."""
    torch.manual_seed(0)
    model = create_model("cnn-tiny", in_channels=1, input_size=(28, 28))
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    loader = make_loader(tiny.train, tiny.info, batch_size=64, train=True)
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    precision = Precision(torch.device("cpu"), torch.bfloat16, torch.amp.GradScaler("cpu"))
    losses = [train_epoch(model, CrossEntropy(), loader, optimizer, scheduler, epoch=e, config=config, checkpoint=None,
                          memory_format=torch.channels_last, progress=False, precision=precision)[0] for e in range(2)]
    assert losses[1] < losses[0] and precision.scaler.get_scale() > 0
    assert Precision.for_training(torch.device("cpu"), config).dtype is None


def test_accuracy_leaves_the_model_where_it_was(tiny):
    model = create_model("cnn-tiny", in_channels=1, input_size=(28, 28))
    loader = make_loader(tiny.selection, tiny.info, batch_size=128, train=False)
    measured = accuracy(model, loader, device=torch.device("cpu"))
    assert next(model.parameters()).device == torch.device("cpu")
    with torch.inference_mode():  # top-1 by hand, on the same eval-mode model and batches
        hits = sum(int((model(images).argmax(1) == labels).sum()) for images, labels, *_ in loader)
    assert measured == hits / len(loader.dataset)


@without_a_gpu
def test_cli_cuda_without_cuda_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgekd.cli", "compress", "--device", "cuda", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "error: device 'cuda' asked for, but PyTorch sees no CUDA GPU" in done.stderr
    assert not (tmp_path / "run").exists()
