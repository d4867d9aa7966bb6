"""What stages share during one run: the data, the target, the run folder, the teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from edgekd import console
from edgekd.data import DataBundle, make_loader
from edgekd.targets import TargetProfile


@dataclass
class RunContext:
    """The state of a run as stages see it. Stages read it and add their results to it."""

    out_dir: Path
    target: TargetProfile
    data: DataBundle
    cache_dir: Path
    trust_checkpoint: bool = False
    progress: bool = True
    stage_dir: Path | None = None
    model_spec: str | None = None
    teacher: nn.Module | None = None
    onnx_path: Path | None = None
    quantized_onnx: Path | None = None  # an int8 Q/DQ model from the quantize stage, for export to hand over
    sparse_layers: tuple[str, ...] = ()  # layers pruned to 2:4; the export stage verifies them
    # Filled by the stage running now; the pipeline moves them into that stage's record.
    accuracy: float | None = None
    accuracy_source: str | None = None
    size_bytes: int | None = None
    latency: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @cached_property
    def val_loader(self) -> DataLoader:
        return make_loader(self.data.val, self.data.info, batch_size=256, train=False)

    @property
    def host_threads(self) -> int | None:
        """Intra-op threads for ONNX Runtime here: the host profile's, else the runtime's default."""
        return self.target.threads if self.target.is_host else None

    def note(self, source: str, message: str) -> None:
        """Something the user should know about this stage's result: shown now and kept in its report row."""
        console.warn(f"{source}: {message}")
        self.details.setdefault("notes", []).append(message)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        info = self.data.info
        return (info.channels, *info.image_size)

    def begin_stage(self, stage_dir: Path) -> None:
        self.stage_dir = stage_dir
        self.accuracy = self.accuracy_source = self.size_bytes = None
        self.latency, self.details = [], {}
