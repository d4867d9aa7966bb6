"""The three roles data plays in a run, so that a number that chose a model never grades it.

* **train** fits weights.
* **selection** scores every choice edgekd makes: accuracy control, fallbacks, slower/worse checks,
  the best peer or epoch, search finalists. It is a fixed, seeded hold-out of the training data
  (``DataSpec.selection`` of it), or the user's ``val`` when they also give ``test``.
* **report** (the user's ``val``, or ``test`` when given) grades the result once, after every
  choice is final. It is sealed: reading it through :class:`ReportSplit` raises, and only code that
  reports (the pipeline's last step, benchmarks) reads it, through :meth:`ReportSplit.unsealed`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset, Subset

from edgekd.data.datasets import DataBundle, DataInfo
from edgekd.errors import DataError

SELECTION = 0.1  # of the training data, when the selection split is held out of it
SEALED = ("the report split was read while choices were still being made; score choices on the selection "
          "split (data.selection) and read the report split only to report, through data.report.unsealed()")


class ReportSplit(Dataset):
    """The reporting split, sealed: its length is public, its items only through :meth:`unsealed`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        raise DataError(SEALED)

    def unsealed(self) -> Dataset:
        """The split's dataset, for scoring a result whose every choice is final."""
        return self.dataset


class Sources(NamedTuple):
    """The datasets a data source provides, before roles are given: ``test`` is None for most sources."""

    train: Dataset
    val: Dataset
    info: DataInfo
    test: Dataset | None = None
    val_name: str = "val"  # what the source calls its val set (Fashion-MNIST's is its test set)


def assign_roles(sources: Sources, *, selection: float | int = SELECTION, seed: int = 0) -> DataBundle:
    """Train, selection and report splits from what a source gave (see the module docstring)."""
    name = sources.info.name
    if sources.test is not None:
        return DataBundle(sources.train, sources.val, ReportSplit(sources.test), sources.info, splits={
            "train": f"{name} train ({len(sources.train):,} items)",
            "selection": f"{name} {sources.val_name} ({len(sources.val):,} items)",
            "report": f"{name} test ({len(sources.test):,} items)"})
    rest, held = hold_out(sources.train, selection, seed=seed)
    return DataBundle(rest, held, ReportSplit(sources.val), sources.info, splits={
        "train": f"{name} train less the selection hold-out ({len(rest):,} items)",
        "selection": f"{len(held):,} items held out of {name} train (seed {seed})",
        "report": f"{name} {sources.val_name} ({len(sources.val):,} items)"})


def hold_out(dataset: Dataset, size: float | int, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A fixed random split of ``dataset``: (the rest, ``size`` items: a fraction, or a count)."""
    total = len(dataset)
    count = max(1, round(size * total)) if isinstance(size, float) else int(size)
    if not 1 <= count <= total // 2:
        raise DataError(f"the training data has {total} items, too few to hold out {count} for the selection "
                        "split; give more training data, a smaller data.selection, or val and test data "
                        "(val then selects)")
    held, rest = seeded_parts(dataset, (count, total - count), seed=seed)
    return rest, held


def seeded_parts(dataset: Dataset, sizes: tuple[int, ...], *, seed: int = 0) -> list[Dataset]:
    """Disjoint parts of ``dataset`` of ``sizes`` items (fewer where it runs out): consecutive runs of one
    seeded permutation. The one way edgekd holds items out: the selection split, the budget search's proxy
    scoring and fine-tuning images, quantization's calibration and accuracy-control images."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    parts, start = [], 0
    for size in sizes:
        parts.append(take(dataset, order[start:start + size]))
        start += size
    return parts


def take(dataset: Dataset, indices: list[int]) -> Dataset:
    """The items at ``indices``: a view of the same kind where the dataset offers one, else a Subset."""
    return dataset.take(indices) if hasattr(dataset, "take") else Subset(dataset, indices)
