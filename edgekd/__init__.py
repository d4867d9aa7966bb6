"""edgekd: compress a trained PyTorch vision model for an edge device, and say how it runs there.

    result = edgekd.compress(model, train_loader, val_loader, target="jetson-orin",
                             stages=[edgekd.Distill(student="cnn-small"), edgekd.Prune(reduction=0.5),
                                     edgekd.Quantize()])

Each stage's work is also a function on objects: :func:`distill_model`, :func:`prune_model`,
:func:`factorize_model`, :func:`quantize_model`, :func:`export_model`, :func:`recover`.
Names load on first use, so ``import edgekd`` stays light (no ONNX Runtime, NNCF, torch-pruning).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

EXPORTS = {
    "compress": "edgekd.api", "CompressResult": "edgekd.api", "train": "edgekd.api",
    "Distill": "edgekd.stages.distill:DistillStage", "Prune": "edgekd.stages.prune:PruneStage",
    "Factorize": "edgekd.stages.factorize:FactorizeStage", "Quantize": "edgekd.stages.quantize:QuantizeStage",
    "Export": "edgekd.stages.export:ExportStage", "Benchmark": "edgekd.stages.benchmark:BenchmarkStage",
    "Recipe": "edgekd.recipe", "EdgekdError": "edgekd.errors", "Budget": "edgekd.search.space",
    "distill_model": "edgekd.distill.training", "recover": "edgekd.distill.recovery",
    "prune_model": "edgekd.prune.goal", "factorize_model": "edgekd.factorize.lowrank",
    "quantize_model": "edgekd.quantize.int8", "export_model": "edgekd.onnx_export",
    "register_loss": "edgekd.distill", "register_stage": "edgekd.stages", "register_model": "edgekd.models",
    "register_runtime": "edgekd.runtime",
}

__all__ = ["__version__", *EXPORTS]


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    module, _, attribute = EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
