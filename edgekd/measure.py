"""Size and cost of a PyTorch model: parameters, multiply-accumulates, serialized bytes."""

from __future__ import annotations

import io

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one image (torch's FLOP counter / 2)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops() // 2)


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the model's state_dict as torch.save writes it (fp32 weights and buffers)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
