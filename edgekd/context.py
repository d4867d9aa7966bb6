"""The run-wide inputs every stage reads: data, target, folders, the user's model, metric and loss, progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from edgekd.data import DataBundle, make_loader
from edgekd.metrics import Metric, resolve_metric
from edgekd.supervised import SupervisedLoss
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
    metric: Metric = field(default_factory=resolve_metric)  # what every choice and the report score (top-1)
    loss: SupervisedLoss = field(default_factory=SupervisedLoss)  # the supervised term of every training (CE)
    report_timings: bool = True  # False: stages skip host timings only their report row shows (search builds)

    def score(self, model) -> float:
        """The run's metric of ``model`` (an ``nn.Module`` or an ONNX model) on the selection split."""
        from edgekd.judge import judge

        return judge(model, self.selection_loader, self.metric, threads=self.host_threads)

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
