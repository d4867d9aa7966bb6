"""Fitting the Jetson calibration to published rows, and cross-validating the fit (benchmarks/estimator_devices.py).

The calibration is a point of a fixed grid (``GRID``). A *form* (``Variant``) says which of its values are
shared by the three Orin devices (all, or all but the per-kernel launch overhead) and what the fit
minimizes over the training rows: the median absolute relative error, or the mean |ln(estimate /
published)| with every model family weighing the same however many rows it has. Cross-validation
holds one model family out at a time; the form itself is chosen inside it (``Fitter.nested``): for each
held-out family, by leave-one-family-out over the other families only.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from functools import cache
from typing import Callable

import numpy as np

GRID = {"compute_efficiency": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8),
        "int8_compute_efficiency": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8),
        "int8_grouped_efficiency": (0.01, 0.02, 0.05, 0.1, 0.2, 0.4),
        "memory_efficiency": (0.4, 0.6, 0.8, 1.0),
        "on_chip_bytes": (0.0, 0.5e6, 1e6, 2e6, 4e6),
        "kernel_overhead_us": (0.0, 2.0, 5.0, 10.0),
        "inference_overhead_us": (0.0, 50.0, 100.0, 200.0),
        "launch_overhead_us": (0.0, 5.0, 10.0, 20.0, 40.0)}
COMPUTE_KEYS = tuple(GRID)[:5]
OVERHEAD_KEYS = tuple(GRID)[5:]  # kernel, inference, launch: the last varies fastest in ``grid_points``
DEVICES = ("jetson-orin", "jetson-orin-nx", "jetson-orin-nano")
LAUNCHES = len(GRID["launch_overhead_us"])


def grid_points() -> tuple[np.ndarray, np.ndarray]:
    compute = np.array(list(itertools.product(*(GRID[k] for k in COMPUTE_KEYS))))
    overheads = np.array(list(itertools.product(*(GRID[k] for k in OVERHEAD_KEYS))))
    return compute, overheads


def median_error(ratio: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Median |estimate/published - 1| over the rows (the last axis), to 4 decimals (ties go to the next key);
    ``weights`` is unused: every row counts once (the signature is every criterion's)."""
    return np.round(np.median(np.abs(ratio - 1), axis=-1), 4)


def family_log_error(ratio: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean |ln(estimate/published)| with ``weights`` (each family's rows share one family's weight)."""
    return np.round(np.abs(np.log(ratio)) @ weights, 6)


@dataclass(frozen=True)
class Variant:
    """One form of the fit: whether each device gets its own launch overhead, and what the fit minimizes."""

    name: str
    per_device_launch: bool
    criterion: Callable[[np.ndarray, np.ndarray], np.ndarray]
    describe: str

    @property
    def free_parameters(self) -> int:
        return len(GRID) + (len(DEVICES) - 1 if self.per_device_launch else 0)

    def launch_assignments(self) -> list[tuple[int, ...]]:
        """Launch-overhead grid index per device, in grid order: shared ones set all three alike."""
        if self.per_device_launch:
            return list(itertools.product(range(LAUNCHES), repeat=len(DEVICES)))
        return [(launch,) * len(DEVICES) for launch in range(LAUNCHES)]


MEDIAN_RULE = ("the smallest median |estimate/published - 1| over the training rows; ties: the smallest maximum, "
               "then the first grid point in GRID order")
LOG_RULE = ("the smallest mean |ln(estimate/published)| over the training rows, each model family weighing the "
            "same; ties: the smallest maximum |estimate/published - 1|, then the first grid point in GRID order")
VARIANTS = (  # in order of preference on a tie: the first is the form every earlier revision used
    Variant("shared-median", False, median_error, f"one launch overhead for all devices; {MEDIAN_RULE}"),
    Variant("shared-log", False, family_log_error, f"one launch overhead for all devices; {LOG_RULE}"),
    Variant("per-device-median", True, median_error, f"a launch overhead per device; {MEDIAN_RULE}"),
    Variant("per-device-log", True, family_log_error, f"a launch overhead per device; {LOG_RULE}"),
)


@dataclass(frozen=True)
class Choice:
    """A fitted calibration: grid indices of the compute values (``compute``), of the kernel x inference overhead
    pair (``overhead``), and of each device's launch overhead (``launch``, in DEVICES order)."""

    variant: Variant
    compute: int
    overhead: int
    launch: tuple[int, ...]

    def calibration(self, device: str) -> dict:
        compute, overheads = grid_points()
        values = list(compute[self.compute]) + list(overheads[self.overhead * LAUNCHES + self.launch[
            DEVICES.index(device)]])
        return {k: float(v) for k, v in zip(GRID, values)}

    def predict(self, estimates: np.ndarray, device_index: np.ndarray) -> np.ndarray:
        """Estimated ms of every row under this calibration (``estimates``: compute, overhead, launch, rows)."""
        launch = np.array(self.launch)[device_index]
        return estimates[self.compute, self.overhead, launch, np.arange(len(device_index))]


def choice_at(calibration: dict) -> Choice:
    """The choice of a committed calibration, every value on the grid: one for all devices, or {device: one}
    differing in the launch overhead only (what ``first_looks`` predicts a new batch with)."""
    per_device = calibration if set(calibration) <= set(DEVICES) else dict.fromkeys(DEVICES, calibration)
    if set(per_device) != set(DEVICES):
        raise ValueError(f"a per-device calibration names every device: {', '.join(DEVICES)}")
    compute, overheads = grid_points()
    indices = []
    for device in DEVICES:
        values = per_device[device]
        c = np.flatnonzero((compute == [values[k] for k in COMPUTE_KEYS]).all(axis=1))
        o = np.flatnonzero((overheads == [values[k] for k in OVERHEAD_KEYS]).all(axis=1))
        if not len(c) or not len(o):
            raise ValueError(f"{device}'s calibration is not a point of GRID: {values}")
        indices.append((int(c[0]), int(o[0]) // LAUNCHES, int(o[0]) % LAUNCHES))
    if len({(c, o) for c, o, _ in indices}) != 1:
        raise ValueError("the devices' calibrations differ in more than the launch overhead")
    # the form's rule is not recorded in a calibration and does not change a prediction: only the sharing is named
    variant = VARIANTS[0] if len({launch for *_, launch in indices}) == 1 else VARIANTS[2]
    return Choice(variant, indices[0][0], indices[0][1], tuple(launch for *_, launch in indices))


class Fitter:
    """Fits and cross-validates over the rows; every fit is cached by its form and the families left out.

    ``estimates``: estimated ms of every row at every grid point, shape (compute points, kernel x inference
    overhead points, launch points, rows).
    """

    def __init__(self, estimates: np.ndarray, published: np.ndarray, families: list[str], devices: list[str]):
        self.estimates = estimates
        self.published = published
        self.families = np.array(families)
        self.device_index = np.array([DEVICES.index(d) for d in devices])
        self.family_names = tuple(dict.fromkeys(families))
        self.fit = cache(self._fit)
        self.held_out = cache(self._held_out)

    def _fit(self, variant: Variant, left_out: frozenset[str]) -> Choice:
        """The grid point ``variant``'s rule picks on every row outside the families ``left_out``.

        A per-device form needs training rows on every device: a device without any would get whichever launch
        overhead comes first on the grid. Where one is missing, the form's shared counterpart is fitted instead
        (the returned choice names it).
        """
        kept = ~np.isin(self.families, list(left_out))
        if variant.per_device_launch and len(np.unique(self.device_index[kept])) < len(DEVICES):
            variant = next(v for v in VARIANTS if not v.per_device_launch and v.criterion is variant.criterion)
        names, counts = np.unique(self.families[kept], return_counts=True)
        per_family = dict(zip(names, counts))
        # a row's estimate depends on its own device's launch overhead only: one block of rows per device and launch
        by_device = [np.flatnonzero(kept & (self.device_index == d)) for d in range(len(DEVICES))]
        blocks = [[self.estimates[:, :, launch, rows] / self.published[rows] for launch in range(LAUNCHES)]
                  for rows in by_device]
        weights = np.concatenate([[1 / (len(names) * per_family[self.families[r]]) for r in rows]
                                  for rows in by_device])
        best = None
        for launch in variant.launch_assignments():
            ratio = np.concatenate([blocks[d][launch[d]] for d in range(len(DEVICES))], axis=-1)
            score = variant.criterion(ratio, weights)
            worst = np.abs(ratio - 1).max(axis=-1)
            c, o = np.unravel_index(np.lexsort((worst.ravel(), score.ravel()))[0], score.shape)
            key = (score[c, o], worst[c, o], c, o)
            if best is None or key < best[0]:
                best = key, Choice(variant, int(c), int(o), launch)
        return best[1]

    def _held_out(self, variant: Variant, left_out: frozenset[str]) -> np.ndarray:
        """Leave-one-family-out among the families not ``left_out``: each row's prediction from a fit without its
        family (NaN for the rows left out)."""
        out = np.full(len(self.published), np.nan)
        for name in self.family_names:
            if name in left_out:
                continue
            rows = self.families == name
            out[rows] = self.fit(variant, left_out | {name}).predict(self.estimates, self.device_index)[rows]
        return out

    def held_out_median(self, variant: Variant, left_out: frozenset[str] = frozenset()) -> float:
        predicted = self.held_out(variant, left_out)
        kept = ~np.isnan(predicted)
        return float(np.median(np.abs(predicted[kept] / self.published[kept] - 1)))

    def select(self, left_out: frozenset[str] = frozenset()) -> Variant:
        """The form with the smallest leave-one-family-out median over the families not ``left_out``."""
        return min(VARIANTS, key=lambda v: (round(self.held_out_median(v, left_out), 4), VARIANTS.index(v)))

    def nested(self) -> tuple[np.ndarray, dict]:
        """Every row predicted by the form and the calibration chosen without its family; and, per held-out family,
        what was chosen and each form's inner leave-one-family-out median."""
        out = np.full(len(self.published), np.nan)
        folds = {}
        for name in self.family_names:
            left_out = frozenset({name})
            variant = self.select(left_out)
            choice = self.fit(variant, left_out)
            rows = self.families == name
            out[rows] = choice.predict(self.estimates, self.device_index)[rows]
            folds[name] = {"training_rows": int((~rows).sum()), "variant": variant.name,
                           "inner_lomo_median": {v.name: round(self.held_out_median(v, left_out), 4)
                                                 for v in VARIANTS},
                           "calibration": {d: choice.calibration(d) for d in DEVICES}}
        return out, folds

    def per_variant(self) -> dict:
        """Each form's own leave-one-family-out over all rows (what ``select`` compares: chosen by it, so the
        smallest is optimistic; the nested figure is the honest one)."""
        out = {}
        for v in VARIANTS:
            predicted = self.held_out(v, frozenset())
            errors = np.abs(predicted / self.published - 1)
            out[v.name] = {"describe": v.describe, "free_parameters": v.free_parameters,
                           "lomo_median_abs_rel_error": round(float(np.median(errors)), 4),
                           "per_family": {f: round(float(statistics.median(errors[self.families == f])), 4)
                                          for f in self.family_names}}
        return out
