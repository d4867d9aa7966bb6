"""Pipeline stages by name. A new stage is one module here and one line in ``STAGES``."""

from __future__ import annotations

from edgekd.errors import UnknownNameError
from edgekd.stages.base import Stage
from edgekd.stages.benchmark import BenchmarkStage
from edgekd.stages.distill import DistillStage
from edgekd.stages.export import ExportStage
from edgekd.stages.factorize import FactorizeStage
from edgekd.stages.prune import PruneStage
from edgekd.stages.quantize import QuantizeStage
from edgekd.stages.teacher import TeacherStage

STAGES: dict[str, type[Stage]] = {
    "teacher": TeacherStage,
    "distill": DistillStage,
    "prune": PruneStage,
    "factorize": FactorizeStage,
    "quantize": QuantizeStage,
    "export": ExportStage,
    "benchmark": BenchmarkStage,
}


PUBLIC_STAGES: dict[str, type[Stage]] = {
    "Distill": DistillStage,
    "Prune": PruneStage,
    "Factorize": FactorizeStage,
    "Quantize": QuantizeStage,
    "Export": ExportStage,
    "Benchmark": BenchmarkStage,
}
"""The names a Python user builds stages by: ``edgekd.Prune(reduction=0.5)``."""


def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise UnknownNameError("stage", name, STAGES)
    return STAGES[name]
