"""What the user asks for (a :class:`Budget`) and what the search may try (:class:`Candidate`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgekd.errors import ConfigError


class Goal(str, enum.Enum):
    FASTEST_WITHIN_DROP = "fastest within an accuracy drop"
    MOST_ACCURATE_WITHIN_LATENCY = "most accurate within a latency budget"


@dataclass(frozen=True)
class Budget:
    """A budget and how hard to search for it.

    Exactly one of ``max_accuracy_drop`` (points of top-1 the result may lose against the model
    given) and ``latency_ms`` (milliseconds per batch of ``batch`` on the target) is set.

    Args:
        batch: the batch size latency is judged at.
        seconds: wall-clock budget for scoring candidates (finalists and the final run come after).
        reductions: the MAC reductions pruning tries (0: the model unpruned).
        precisions: ``int8`` and/or ``float`` (int8 in the target's scheme, slow layers float on CPUs).
        proxy_images / proxy_epochs: the short KD fine-tune that scores a candidate cheaply.
        score_images: held-out training images the proxy is scored on (never the validation set).
        finalists: how many of the best candidates get a full recovery and a validation check.
        recovery_epochs: the finalists' (and the final recipe's) KD recovery.
    """

    max_accuracy_drop: float | None = None
    latency_ms: float | None = None
    batch: int = 1
    seconds: float = 3600.0
    reductions: tuple[float, ...] = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8)
    precisions: tuple[str, ...] = ("int8", "float")
    proxy_images: int = 5000
    proxy_epochs: int = 1
    score_images: int = 2000
    finalists: int = 2
    recovery_epochs: int = 3

    def __post_init__(self):
        if (self.max_accuracy_drop is None) == (self.latency_ms is None):
            raise ConfigError("give one budget: max_accuracy_drop (points) or latency_ms (at batch), not both "
                              "or neither")
        if any(not 0 <= r < 1 for r in self.reductions) or not self.reductions:
            raise ConfigError(f"reductions must be fractions in [0, 1), got {list(self.reductions)}")
        unknown = set(self.precisions) - {"int8", "float"}
        if unknown or not self.precisions:
            raise ConfigError(f"precisions are int8 and/or float, got {list(self.precisions)}")
        if min(self.batch, self.proxy_images, self.score_images, self.finalists) < 1 or self.seconds <= 0:
            raise ConfigError("batch, proxy_images, score_images and finalists must be at least 1, seconds above 0")

    @property
    def goal(self) -> Goal:
        return Goal.FASTEST_WITHIN_DROP if self.max_accuracy_drop is not None else Goal.MOST_ACCURATE_WITHIN_LATENCY

    def describe(self) -> str:
        if self.goal is Goal.FASTEST_WITHIN_DROP:
            return f"the fastest model within {self.max_accuracy_drop:g} points of the original (batch {self.batch})"
        return f"the most accurate model within {self.latency_ms:g} ms at batch {self.batch}"

    def candidates(self) -> list[Candidate]:
        """Every candidate, the cheapest to score first (so a short time budget still covers the range)."""
        return [Candidate(r, p == "int8") for r in sorted(self.reductions) for p in self.precisions]


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: prune ``reduction`` of the MACs, then int8 or float."""

    reduction: float
    int8: bool

    @property
    def key(self) -> str:
        return f"prune-{self.reduction:.2f}-{'int8' if self.int8 else 'float'}"

    def describe(self) -> str:
        pruned = f"{self.reduction:.0%} of the MACs pruned" if self.reduction else "unpruned"
        return f"{pruned}, {'int8' if self.int8 else 'float'}"
