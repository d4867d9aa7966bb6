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
    """One latency figure: milliseconds per batch (median, p90, p99) on a named device."""

    batch: int
    device: str
    kind: LatencyKind
    runtime: str
    ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    runs: int = 0
    threads: int | None = None
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


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
