"""The run-wide inputs every stage reads: data, target, folders, the user's model, progress."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from edgekd.data import DataBundle, make_loader
from edgekd.targets import TargetProfile


@dataclass
class RunContext:
    """What a run gives every stage. Stages read it; what they produce they return."""

    out_dir: Path
    target: TargetProfile
    data: DataBundle
    cache_dir: Path
    trust_checkpoint: bool = False
    progress: bool = True
    user_model: nn.Module | None = None  # the nn.Module given to compress(), for the teacher stage
    stage_dir: Path | None = None  # the folder of the stage running now (set by the pipeline)

    @cached_property
    def selection_loader(self) -> DataLoader:
        """The selection split, which every choice a stage makes is scored on (never the report split)."""
        return make_loader(self.data.selection, self.data.info, batch_size=256, train=False)

    @property
    def device(self):
        """The run's device (``torch.device``), for calibration and scoring loops (:mod:`edgekd.device`)."""
        from edgekd import device as devices

        return devices.current()

    @property
    def host_threads(self) -> int | None:
        """Intra-op threads for ONNX Runtime here: the host profile's, else the runtime's default."""
        return self.target.threads if self.target.is_host else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        info = self.data.info
        return (info.channels, *info.image_size)
