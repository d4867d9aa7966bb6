"""Regenerate ``examples/RECIPE/TARGET/report.{md,json,html}`` with the current code: one command.

For each recipe, the first target's run trains (or loads) the teacher and distils the student; every
other target's run starts from those two stages (their results do not depend on the target, see
``Stage.uses_target``) and runs the rest for its own target. The default recipe's teacher stage loads the
teacher edgekd ships (``weights/cnn-fashion-mnist.safetensors``), as ``make demo`` does.

Run: .venv/bin/python benchmarks/regenerate_examples.py [--recipes default fast] [--targets ...]
(``make examples``). Runs go to a temporary folder; only the three report files are kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import edgekd
from edgekd.pipeline import seed_run
from edgekd.targets import list_targets

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ("report.md", "report.json", "report.html")
TARGET_FREE_STAGES = 2  # teacher, distill: the same run for every target


def regenerate(recipe: str, targets: list[str], work: Path) -> None:
    """Run ``recipe`` for every target into ``work``, copying each report into ``examples/RECIPE/TARGET``."""
    first: Path | None = None
    for target in targets:
        out = work / recipe / target
        if first is not None:
            seed_run(first, out, TARGET_FREE_STAGES)
        result = edgekd.compress(target=target, recipe=recipe, out=out, resume=first is not None, progress=False)
        if recipe == "default" and first is None:
            source = result.report["stages"][0]["details"]["source"]
            if not source.startswith("shipped weights"):
                raise SystemExit(f"the default recipe's teacher was not the shipped one ({source}): "
                                 "rerun benchmarks/teacher_fashion_mnist.py")
        first = first or out
        keep = ROOT / "examples" / recipe / target
        keep.mkdir(parents=True, exist_ok=True)
        for name in REPORTS:
            shutil.copyfile(out / name, keep / name)
        print(f"{recipe} → {target}: accuracy {result.accuracy:.4f} ({result.report['summary']['accuracy_source']}, "
              f"report split); reports in {keep.relative_to(ROOT)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=["default", "fast"])
    parser.add_argument("--targets", nargs="*", default=None, help="default: every shipped profile")
    args = parser.parse_args(argv)
    targets = args.targets or list_targets()
    with tempfile.TemporaryDirectory(prefix="edgekd-examples-") as work:
        for recipe in args.recipes:
            regenerate(recipe, targets, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
