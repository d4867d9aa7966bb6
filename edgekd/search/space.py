"""What the user asks for (a :class:`Budget`) and what the search may try (:class:`Candidate`)."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from edgekd.errors import ConfigError
from edgekd.quantize.accuracy import SCORING_IMAGES

ORIGINAL = "original"  # the base that is the user's (or the recipe's teacher) model itself
ALLOCATIONS = ("uniform", "global")  # the prune stage's scopes: per-layer allocation of a reduction
INT8_PROXY_IMAGES = 32 + SCORING_IMAGES  # the fewest proxy images the quantize stage can calibrate and score on


class Goal(str, enum.Enum):
    FASTEST_WITHIN_DROP = "fastest within an accuracy drop"
    MOST_ACCURATE_WITHIN_LATENCY = "most accurate within a latency budget"


@dataclass(frozen=True)
class Budget:
    """A budget and how hard to search for it.

    Exactly one of ``max_accuracy_drop`` (points of top-1 the result may lose against the model
    given) and ``latency_ms`` (milliseconds per batch of ``batch`` on the target) is set.

    The search space is every base (the model given, and each student distilled from it) ×
    every compression of it (unpruned; pruned by each of ``reductions`` with each of
    ``allocations``; factorized by each of ``factorizations``) × each of ``precisions``. In int8
    on CPU targets, the layers the runtime would run slower in int8 stay float in every candidate.

    Args:
        batch: the batch size latency is judged at.
        seconds: wall-clock budget for scoring candidates (students, finalists and the final run come after).
        students: students to distil from the model and search from too (zoo names or
            ``pkg.module:factory``); None: the recipe's distill student, if it has a distill stage.
        reductions: the MAC reductions pruning tries (0: unpruned).
        allocations: how a reduction is spread over the layers: ``uniform`` (about the same fraction
            of every layer) and/or ``global`` (least important channels per MAC saved first).
        factorizations: MAC reductions low-rank factorization tries instead of pruning (greedy ranks).
        precisions: ``int8`` and/or ``float`` (int8 in the target's scheme).
        proxy_images: training images of the short KD fine-tune that scores a candidate cheaply.
        proxy_epochs: that fine-tune's epochs.
        score_images: held-out training images the proxy is scored on (never the report split).
        finalists: how many of the best candidates get a full recovery and a selection-split check.
        near_misses: for an accuracy budget, how many of the fastest candidates faster than the
            finalists that miss the budget on the proxy by less than the budget again get the same
            (the short proxy under-rates compressed models).
        recovery_epochs: the finalists' (and the final recipe's) KD recovery.
        seed: seeds the search's own randomness: which training images fine-tune and score the proxy,
            and every fine-tune (proxy, finalists' and the final recipe's recovery). A search repeated
            with other seeds shows how much of its pick is chance.
        margin_se: for an accuracy budget, a finalist holds only if its drop on the selection split plus
            this many standard errors of that drop (paired over the same images) stays within the budget:
            a pick that barely meets it on these images may not on others. 0: the drop alone decides.
    """

    max_accuracy_drop: float | None = None
    latency_ms: float | None = None
    batch: int = 1
    seconds: float = 3600.0
    students: tuple[str, ...] | None = None
    reductions: tuple[float, ...] = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8)
    allocations: tuple[str, ...] = ALLOCATIONS
    factorizations: tuple[float, ...] = (0.4,)
    precisions: tuple[str, ...] = ("int8", "float")
    proxy_images: int = 20000
    proxy_epochs: int = 1
    score_images: int = 2000
    finalists: int = 2
    near_misses: int = 2
    recovery_epochs: int = 3
    seed: int = 0
    margin_se: float = 0.0

    def __post_init__(self):
        if (self.max_accuracy_drop is None) == (self.latency_ms is None):
            raise ConfigError("give one budget: max_accuracy_drop (points) or latency_ms (at batch), not both "
                              "or neither")
        if self.margin_se < 0 or (self.margin_se and self.max_accuracy_drop is None):
            raise ConfigError(f"margin_se is a number of standard errors (at least 0) kept from an accuracy budget's "
                              f"edge; got {self.margin_se:g}" + ("" if self.max_accuracy_drop is not None else
                                                              " with a latency budget, which has no such edge"))
        if any(not 0 <= r < 1 for r in (*self.reductions, *self.factorizations)) or not self.reductions:
            raise ConfigError(f"reductions and factorizations must be fractions in [0, 1), got "
                              f"{list(self.reductions)} and {list(self.factorizations)}")
        unknown = set(self.precisions) - {"int8", "float"}
        if unknown or not self.precisions:
            raise ConfigError(f"precisions are int8 and/or float, got {list(self.precisions)}")
        if set(self.allocations) - set(ALLOCATIONS) or not self.allocations:
            raise ConfigError(f"allocations are {' and/or '.join(ALLOCATIONS)}, got {list(self.allocations)}")
        if self.students is not None and (isinstance(self.students, str) or ORIGINAL in self.students):
            raise ConfigError(f"students is a list of model names (not '{ORIGINAL}'), e.g. ('cnn-small',)")
        if min(self.batch, self.proxy_images, self.score_images, self.finalists) < 1 or self.seconds <= 0 \
                or self.near_misses < 0:
            raise ConfigError("batch, proxy_images, score_images and finalists must be at least 1, near_misses at "
                              "least 0, seconds above 0")
        if "int8" in self.precisions and self.proxy_images < INT8_PROXY_IMAGES:
            raise ConfigError(f"int8 candidates need proxy_images of at least {INT8_PROXY_IMAGES} (32 calibrate, "
                              f"{SCORING_IMAGES} score accuracy control), got {self.proxy_images}")

    @property
    def goal(self) -> Goal:
        return Goal.FASTEST_WITHIN_DROP if self.max_accuracy_drop is not None else Goal.MOST_ACCURATE_WITHIN_LATENCY

    def describe(self) -> str:
        if self.goal is Goal.FASTEST_WITHIN_DROP:
            margin = f", with a {self.margin_se:g}-standard-error margin" if self.margin_se else ""
            return (f"the fastest model within {self.max_accuracy_drop:g} points of the original{margin} "
                    f"(batch {self.batch})")
        return f"the most accurate model within {self.latency_ms:g} ms at batch {self.batch}"

    def compressions(self) -> list[tuple[float, str, float]]:
        """(prune reduction, allocation, factorization) of each way a base is compressed, cheapest first."""
        unpruned = [(0.0, "uniform", 0.0)]
        pruned = [(r, a, 0.0) for r in sorted(set(self.reductions) - {0.0}) for a in self.allocations]
        factorized = [(0.0, "uniform", f) for f in sorted(set(self.factorizations) - {0.0})]
        return unpruned + factorized + pruned

    def candidates(self, bases: tuple[str, ...] = (ORIGINAL,)) -> list[Candidate]:
        """Every candidate, the cheapest to score first (so a short time budget still covers the range):
        unpruned bases need no fine-tune, then factorized and pruned ones by increasing reduction."""
        return [Candidate(base, reduction, precision == "int8", allocation, factorize)
                for (reduction, allocation, factorize), base, precision
                in itertools.product(self.compressions(), bases, self.precisions)]


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: ``base`` (the original or a student), pruned by ``reduction`` of
    its MACs with ``allocation`` or factorized by ``factorize`` of them, then int8 or float."""

    base: str
    reduction: float
    int8: bool
    allocation: str = "uniform"
    factorize: float = 0.0

    @property
    def compressed(self) -> bool:
        return self.reduction > 0 or self.factorize > 0

    @property
    def key(self) -> str:
        if self.factorize:
            how = f"lowrank-{self.factorize:.2f}"
        else:
            how = f"prune-{self.reduction:.2f}" + ("-global" if self.reduction and self.allocation == "global" else "")
        prefix = "" if self.base == ORIGINAL else f"{self.base}/"
        return f"{prefix}{how}-{'int8' if self.int8 else 'float'}"

    def describe(self) -> str:
        if self.factorize:
            how = f"{self.factorize:.0%} of the MACs factorized away"
        elif self.reduction:
            how = f"{self.reduction:.0%} of the MACs pruned ({self.allocation})"
        else:
            how = "unpruned"
        base = "" if self.base == ORIGINAL else f"student {self.base}, "
        return f"{base}{how}, {'int8' if self.int8 else 'float'}"
