"""The records a run produces: one per stage, with its latency figures. They are the report's rows."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field


class LatencyKind(str, enum.Enum):
    """Where a latency figure comes from. An estimate is never shown as a measurement."""

    MEASURED = "measured"
    ESTIMATED = "estimated"
    NOT_MEASURED = "not-measured"


@dataclass
class LatencyRecord:
    """One latency figure: milliseconds per batch (median, p90, p99) on a named device.

    An estimate carries its uncertainty: ``uncertainty_pct`` is the profile's median error on
    ``held_out_measurements`` published measurements its calibration was not fitted on; ``None``
    (and 0) where no public measurement has checked the profile, or where the model lies outside
    the range those measurements span: ``outside_validated_range`` then names what is outside
    (``5.53 M MACs, validated 1.24 G-216 G``).
    """

    batch: int
    device: str
    kind: LatencyKind
    runtime: str
    ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    runs: int = 0
    threads: int | None = None
    uncertainty_pct: float | None = None
    held_out_measurements: int = 0
    note: str = ""
    outside_validated_range: str = ""

    def uncertainty(self) -> str:
        """``±18% on 6 held-out public measurements``, ``unvalidated ...``, or '' for a measurement."""
        return describe_uncertainty(self.kind.value, self.uncertainty_pct, self.held_out_measurements,
                                    self.outside_validated_range)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


def describe_uncertainty(kind: str, uncertainty_pct: float | None, held_out: int, outside: str = "") -> str:
    """The words the reports put beside an estimate (shared by the markdown and html writers).

    ``outside``: what of the model lies outside the profile's validated range (a record's
    ``outside_validated_range``); then the estimate has no ± and says so.
    """
    if kind != LatencyKind.ESTIMATED.value:
        return ""
    if outside:
        return f"unvalidated for a model of this size ({outside})"
    if uncertainty_pct is None:
        return "unvalidated (no public measurement checks this profile)"
    return f"±{uncertainty_pct:.0f}% on {held_out} held-out public measurement{'s' if held_out != 1 else ''}"


@dataclass
class StageRecord:
    """What the model looked like after a stage.

    ``selection_accuracy`` is what the stage's choices were scored with (the selection split);
    ``accuracy`` is the report split's, scored once the run's every choice is final (None until then).
    """

    name: str
    params: int
    macs: int
    size_bytes: int
    accuracy: float | None
    accuracy_source: str
    selection_accuracy: float | None = None
    seconds: float = 0.0
    latency: list[LatencyRecord] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["latency"] = [r.to_dict() for r in self.latency]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StageRecord":
        latency = [LatencyRecord(**{**r, "kind": LatencyKind(r["kind"])}) for r in d.get("latency", [])]
        return cls(**{**d, "latency": latency})
