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
    (and 0) where no public measurement has checked the profile.
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

    def uncertainty(self) -> str:
        """``±18% on 6 held-out public measurements``, ``unvalidated``, or '' for a measurement."""
        return describe_uncertainty(self.kind.value, self.uncertainty_pct, self.held_out_measurements)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


def describe_uncertainty(kind: str, uncertainty_pct: float | None, held_out: int) -> str:
    """The words the reports put beside an estimate (shared by the markdown and html writers)."""
    if kind != LatencyKind.ESTIMATED.value:
        return ""
    if uncertainty_pct is None:
        return "unvalidated (no public measurement checks this profile)"
    return f"±{uncertainty_pct:.0f}% on {held_out} held-out public measurement{'s' if held_out != 1 else ''}"


@dataclass
class StageRecord:
    """What the model looked like after a stage, measured on the validation set."""

    name: str
    params: int
    macs: int
    size_bytes: int
    accuracy: float | None
    accuracy_source: str
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
