"""Fashion-MNIST in its original IDX (.gz) files: finding them, reading them, checking them."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from edgekd.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
INSTALL_HINT = (
    "install it with `apt-get install -y dataset-fashion-mnist`, or put the four "
    "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist into "
    "~/.cache/edgekd/fashion-mnist, or pass --data DIR"
)
_UBYTE = 0x08


def search_paths(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for the IDX files, in order: explicit, $EDGEKD_DATA, system, user cache."""
    paths = [Path(explicit)] if explicit else []
    if os.environ.get("EDGEKD_DATA"):
        paths.append(Path(os.environ["EDGEKD_DATA"]))
    paths += [Path("/usr/share/datasets/fashion-mnist"), Path.home() / ".cache/edgekd/fashion-mnist"]
    return paths


def has_idx_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in FILES.values() for name in pair)


def find_fashion_mnist(explicit: str | os.PathLike | None = None) -> Path:
    """The first folder holding all four Fashion-MNIST files; an explicit folder must hold them."""
    if explicit is not None:
        folder = Path(explicit)
        if not has_idx_files(folder):
            missing = [n for p in FILES.values() for n in p if not (folder / n).is_file()]
            raise DataError(f"{folder} does not hold Fashion-MNIST (missing {', '.join(missing)}); {INSTALL_HINT}")
        return folder
    for folder in search_paths():
        if has_idx_files(folder):
            return folder
    tried = ", ".join(str(p) for p in search_paths())
    raise DataError(f"Fashion-MNIST not found (looked in {tried}); {INSTALL_HINT}")


def read_idx(path: Path, *, expected_ndim: int) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes into an array, checking header and length."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {INSTALL_HINT}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is truncated or not a gzip file ({exc}); delete it and {INSTALL_HINT}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or raw[3] != expected_ndim:
        raise DataError(f"{path} is not an IDX file of {expected_ndim}-D unsigned bytes (bad header); "
                        f"delete it and {INSTALL_HINT}")
    header = 4 + 4 * expected_ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header cut short); delete it and {INSTALL_HINT}")
    dims = struct.unpack(f">{expected_ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated or corrupt: header promises {expected} bytes of data, "
                        f"file holds {len(raw) - header}; delete it and {INSTALL_HINT}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of one split ('train' or 'val')."""
    images_name, labels_name = FILES[split]
    images = read_idx(folder / images_name, expected_ndim=3)
    labels = read_idx(folder / labels_name, expected_ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{folder / images_name} holds {len(images)} images but {folder / labels_name} "
                        f"holds {len(labels)} labels; one of them is corrupt: {INSTALL_HINT}")
    if labels.max(initial=0) >= len(CLASSES):
        raise DataError(f"{folder / labels_name} has labels outside 0-9; it is corrupt: {INSTALL_HINT}")
    return images[:, None, :, :], labels.astype(np.int64)
