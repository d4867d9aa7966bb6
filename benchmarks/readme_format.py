"""What every README block shares: where results live, reading them, and a few number formats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ReadmeError(Exception):
    """A README block or a results file the renderer cannot use; the message names it."""


def res(name: str) -> str:
    return f"benchmarks/results/{name}.json"


def report(recipe: str, target: str) -> str:
    return f"examples/{recipe}/{target}/report.json"


class Results(Mapping):
    """Results files by repository-relative path, read on first use; a missing one is a ReadmeError.

    ``data`` (tests): the files' contents in memory instead of the repository's.
    """

    def __init__(self, root: Path = REPO, data: Mapping | None = None):
        self.root, self.data, self.cache = root, data, {}

    def __getitem__(self, path: str) -> dict:
        if path not in self.cache:
            if self.data is not None:
                if path not in self.data:
                    raise ReadmeError(f"results file {path} is missing")
                self.cache[path] = self.data[path]
            else:
                file = self.root / path
                if not file.is_file():
                    raise ReadmeError(f"results file {path} is missing (its benchmark or example run writes it)")
                self.cache[path] = json.loads(file.read_text())
        return self.cache[path]

    def __iter__(self):
        return iter(self.data if self.data is not None else self.cache)

    def __len__(self) -> int:
        return len(self.data if self.data is not None else self.cache)


# ---------------------------------------------------------------- formatting helpers

def pm(x: dict) -> str:
    """``88.84% ± 0.22`` (the spread in points), as the prose writes a row."""
    return f"{x['accuracy_mean']:.2%} ± {x['accuracy_std'] * 100:.2f}"


def gap(a: float, b: float, digits: int = 2) -> str:
    """a - b in percentage points."""
    return f"{(a - b) * 100:.{digits}f}"


def find(rows: list[dict], what: str, **keys) -> dict:
    for x in rows:
        if all(x.get(k) == v for k, v in keys.items()):
            return x
    raise ReadmeError(f"no row with {keys} in {what}")


def spread(values: list[float], fmt: str) -> str:
    """``a–b`` over values (one value alone when they agree)."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def lines(*parts: str | list[str]) -> str:
    out = []
    for p in parts:
        out += p if isinstance(p, list) else [p]
    return "\n".join(out)


def search_label(row: Mapping, markdown: bool = False) -> str:
    """A search benchmark run's group: its target, and the standard-error margin it kept (if any)."""
    target = f"`{row['target']}`" if markdown else row["target"]
    return target + (f", {row['margin_se']:g}-SE margin" if row.get("margin_se") else "")
