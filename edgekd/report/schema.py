"""The shape of ``report.json`` (schema version 1), for tools that read it and for edgekd itself.

``edgekd report`` validates a run's report with :class:`Report` before merging or comparing,
and the tests validate every report a run writes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: int = Field(ge=1)
    device: str
    kind: Literal["measured", "estimated", "not-measured"]
    runtime: str
    ms: float | None = Field(None, gt=0)
    p90_ms: float | None = None
    p99_ms: float | None = None
    runs: int = Field(0, ge=0)
    threads: int | None = None
    # an estimate's validated error: median |estimate/published - 1| in percent on held-out public
    # measurements of the device, and how many; None (0) where none has checked the profile
    uncertainty_pct: float | None = Field(None, ge=0)
    held_out_measurements: int = Field(0, ge=0)
    note: str = ""
    outside_validated_range: str = ""  # an estimate of a model outside the profile's validated range: what is outside

    @model_validator(mode="after")
    def _figure_matches_kind(self) -> "Latency":
        if (self.ms is None) != (self.kind == "not-measured"):
            raise ValueError(f"a {self.kind} record must {'not ' if self.kind == 'not-measured' else ''}have ms")
        if self.kind == "measured" and self.runs < 1:
            raise ValueError("a measured record says how many runs it timed")
        if self.kind != "estimated" and (self.uncertainty_pct is not None or self.held_out_measurements):
            raise ValueError("only an estimate carries an estimation error")
        if (self.uncertainty_pct is None) != (self.held_out_measurements == 0):
            raise ValueError("an estimation error says how many held-out measurements it was checked on")
        return self


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: int = Field(ge=0)
    macs: int = Field(ge=0)
    size_bytes: int = Field(ge=0)
    accuracy: float | None = None  # the run's metric (report.metric); 0-1 for top-1 and mIoU
    accuracy_source: str
    selection_accuracy: float | None = None
    seconds: float = Field(ge=0)
    latency: list[Latency]
    details: dict


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    edgekd_version: str
    recipe: _Open
    target: _Open
    data: _Open
    preprocessing: _Open
    artifacts: dict[str, str]
    stages: list[Stage] = Field(min_length=1)
    summary: _Open
    versions: dict[str, str]
    search: _Open | None = None  # a budget-driven run: candidates, Pareto front, finalists
    metric: _Open | None = None  # what accuracy means (edgekd.metrics); absent in reports before it: top-1

    @model_validator(mode="after")
    def _fractions_are_fractions(self) -> "Report":
        """A 0-1 metric (top-1, mIoU; every report without a metric) stays within 0-1."""
        if getattr(self.metric, "fraction", True):  # _Open keeps the metric's keys as attributes
            for stage in self.stages:
                for figure in (stage.accuracy, stage.selection_accuracy):
                    if figure is not None and not 0 <= figure <= 1:
                        raise ValueError(f"stage {stage.name}: {figure} is outside 0-1 for a 0-1 metric")
        return self
