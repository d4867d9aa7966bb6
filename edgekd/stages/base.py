"""What every stage is: a frozen, validated configuration with one ``apply`` method.

A stage takes what the previous stage handed over (:class:`Handoff`), does its work by calling
library functions on those objects, and returns the new handoff; what it measured for its report
row goes into the :class:`ReportRow` it is given. The run context carries only run-wide inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from edgekd import console
from edgekd.context import RunContext


@dataclass(frozen=True)
class Artifact:
    """A file one stage wrote for a later one, with the stage and settings that produced it."""

    path: Path
    stage: str
    settings: dict

    def produced_by(self) -> dict:
        return {"file": self.path.name, "stage": self.stage, "settings": self.settings}


@dataclass(frozen=True)
class Handoff:
    """What a stage hands the next: the model and whatever a later stage must know about it."""

    model: nn.Module | None = None
    teacher: nn.Module | None = None  # the run's original teacher (for distill's ``teacher: original``)
    model_spec: str | None = None  # zoo name or import path of ``model``, while its architecture is still that
    int8: Artifact | None = None  # an int8 Q/DQ ONNX model of ``model``, for the export stage to ship
    onnx: Artifact | None = None  # the exported, checked model.onnx
    sparse_layers: tuple[str, ...] = ()  # layers pruned to 2:4; export verifies them

    def with_model(self, model: nn.Module, *, model_spec: str | None = None,
                   sparse_layers: tuple[str, ...] = ()) -> Handoff:
        """A new model: artifacts made from the old one (int8, model.onnx, 2:4 layers) no longer apply."""
        return dataclasses.replace(self, model=model, model_spec=model_spec, int8=None, onnx=None,
                                   sparse_layers=sparse_layers)

    def replace(self, **changes) -> Handoff:
        return dataclasses.replace(self, **changes)


@dataclass
class ReportRow:
    """What a stage measured for its row of the report; the pipeline adds parameters, MACs and time."""

    accuracy: float | None = None
    accuracy_source: str | None = None
    size_bytes: int | None = None
    latency: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def measured(self, accuracy: float, source: str, *, size_bytes: int | None = None) -> None:
        self.accuracy, self.accuracy_source = accuracy, source
        if size_bytes is not None:
            self.size_bytes = size_bytes

    def note(self, source: str, message: str) -> None:
        """Something the user should know about this stage's result: shown now and kept in its row."""
        console.warn(f"{source}: {message}")
        self.details.setdefault("notes", []).append(message)


class Stage(BaseModel):
    """A pipeline step. Its fields are its settings, so a recipe is a list of stages.

    ``apply(given, ctx, row)`` returns the :class:`Handoff` for the next stage and records what it
    measured in ``row``. ``restore(given, ctx)`` rebuilds the same handoff from the stage's folder
    when a resumed run skips it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    needs: ClassVar[tuple[str, ...]] = ("model",)  # what an earlier stage must have made: "model", "onnx"
    makes: ClassVar[tuple[str, ...]] = ()  # what it hands on for later stages; needing nothing, it can start a recipe
    public_name: ClassVar[str | None] = None  # the name a Python user builds it by: ``edgekd.Prune``
    uses_target: ClassVar[bool] = True  # False: its result is the same for every target (reusable across them)

    @model_validator(mode="before")
    @classmethod
    def _merge_nested_settings(cls, data: Any) -> Any:
        """``recovery: {train: {epochs: 1}}`` changes the epochs of the stage's own default, not of a blank config."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, value in data.items():
            field_info = cls.model_fields.get(name)
            if field_info is not None and isinstance(value, dict) and isinstance(field_info.default, BaseModel):
                merged[name] = merge_into(field_info.default, value)
        return merged

    def apply(self, given: Handoff, ctx: RunContext, row: ReportRow) -> Handoff:
        raise NotImplementedError

    def restore(self, given: Handoff, ctx: RunContext) -> Handoff:
        return given

    def settings(self) -> dict:
        """The stage's settings as plain data (what the report and artifacts record)."""
        return self.model_dump(mode="json")


def merge_into(default: BaseModel, changes: dict) -> dict:
    """``default``'s settings with ``changes`` applied, nested settings merged the same way."""
    merged = default.model_dump()
    for key, value in changes.items():
        current = getattr(default, key, None)
        merged[key] = merge_into(current, value) if isinstance(current, BaseModel) and isinstance(value, dict) \
            else value
    return merged


NEEDS = {"model": "a model", "onnx": "an exported model"}
"""What a stage's ``needs``/``makes`` entries are called in messages; a user's stage may name others."""


class StageOrderError(ValueError):
    """A stage placed before what it needs is made; ``index`` is its place in the list."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index
