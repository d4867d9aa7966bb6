"""How the reports name and print the run's metric: its label in every table, percent for 0-1 metrics.

A report written before metrics had names (no ``metric`` key) is a top-1 report.
"""

from __future__ import annotations

import math

TOP1 = {"name": "top1", "label": "accuracy", "higher_is_better": True, "points_per_unit": 100.0, "fraction": True}


def metric_of(report: dict) -> dict:
    return report.get("metric") or TOP1


def label(report: dict) -> str:
    """What the tables call the metric: ``accuracy`` (top-1), ``mIoU``, ``−MSE``, or the user's name."""
    return metric_of(report)["label"]


def heading(report: dict) -> str:
    """The label at the start of a sentence: ``Accuracy``, but ``mIoU`` as it is written."""
    name = label(report)
    return name[:1].upper() + name[1:] if name.islower() else name


def value(report: dict, figure: float | None, *, signed: bool = False) -> str:
    """A metric value as the tables print it (percent for 0-1 metrics); ``–`` for none."""
    if figure is None or (isinstance(figure, float) and math.isnan(figure)):
        return "–"
    if metric_of(report)["fraction"]:
        return f"{figure:+.2%}" if signed else f"{figure:.2%}"
    return f"{figure:+.4g}" if signed else f"{figure:.4g}"
