"""edgekd: compress a trained PyTorch vision model for an edge device, and say how it runs there."""

__version__ = "0.1.0"

from edgekd.api import compress, train  # noqa: E402

__all__ = ["compress", "train", "__version__"]
