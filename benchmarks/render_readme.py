"""Render the README's numbers from the committed results, so the README cannot drift from them.

Every block of numbers in README.md that comes from ``benchmarks/results/*.json`` or
``examples/*/report.json`` sits between ``<!-- rendered:NAME -->`` and ``<!-- /rendered:NAME -->``;
``BLOCKS`` maps each NAME to the function that renders it from the results (a mapping from the
file's path, relative to the repository, to its parsed JSON).

    python benchmarks/render_readme.py           # rewrite the blocks in README.md (temp file + rename)
    python benchmarks/render_readme.py --check   # exit 1, naming each block that differs, with a diff

``tests/test_readme.py`` runs the check, so a README that disagrees with the results fails the tests.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the readme_* modules and summarize.py beside it

from readme_blocks import BLOCKS  # noqa: E402
from readme_format import REPO, ReadmeError, Results, res  # noqa: E402,F401 (Results and res: for the tests)

README = REPO / "README.md"
MARKER = re.compile(r"^<!-- (/?)rendered:([A-Za-z0-9_-]+) -->[ \t]*$", re.M)


def blocks_in(text: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each block's body in text; a marker without its pair or an unknown name raises."""
    found, open_name, open_end = [], None, 0
    for m in MARKER.finditer(text):
        closing, name = m[1] == "/", m[2]
        if name not in BLOCKS:
            raise ReadmeError(f"README marker names an unknown block {name!r}; known: {', '.join(BLOCKS)}")
        if not closing:
            if open_name:
                raise ReadmeError(f"README block {open_name!r} is not closed before block {name!r} opens")
            open_name, open_end = name, m.end()
        elif name != open_name:
            raise ReadmeError(f"README has <!-- /rendered:{name} --> without its opening marker")
        else:
            found.append((name, open_end, m.start()))
            open_name = None
    if open_name:
        raise ReadmeError(f"README block {open_name!r} has no closing marker <!-- /rendered:{open_name} -->")
    names = [n for n, _, _ in found]
    if dup := {n for n in names if names.count(n) > 1}:
        raise ReadmeError(f"README has block(s) {', '.join(sorted(dup))} more than once")
    if missing := [n for n in BLOCKS if n not in names]:
        raise ReadmeError(f"README lacks the marker(s) for block(s) {', '.join(missing)}")
    return found


def render(text: str, results: Mapping) -> str:
    """text with every block's body replaced by what its function renders from results."""
    out, pos = [], 0
    for name, start, end in blocks_in(text):
        out += [text[pos:start], "\n", BLOCKS[name](results).rstrip("\n"), "\n"]
        pos = end
    return "".join(out) + text[pos:]


def check(text: str, results: Mapping) -> list[str]:
    """The names of the blocks whose README text differs from what the results render, each with its diff."""
    rendered = render(text, results)
    old = {n: text[s:e] for n, s, e in blocks_in(text)}
    new = {n: rendered[s:e] for n, s, e in blocks_in(rendered)}
    problems = []
    for name in old:
        if old[name] != new[name]:
            diff = "".join(difflib.unified_diff(old[name].splitlines(True), new[name].splitlines(True),
                                                f"README.md (block {name})", f"rendered (block {name})"))
            problems.append(f"block {name} differs from its results:\n{diff}")
    return problems


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md disagrees")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    try:
        if args.check:
            problems = check(text, Results())
            for p in problems:
                print(p)
            if problems:
                print(f"{len(problems)} block(s) differ: run `make readme`")
            return 1 if problems else 0
        new = render(text, Results())
    except ReadmeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if new != text:
        write_atomically(args.readme, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
