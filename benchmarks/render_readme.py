"""Render the numbers in README.md and docs/ from the committed results, so neither can drift from them.

Every block of numbers that comes from ``benchmarks/results/*.json`` or ``examples/*/report.json`` sits
between ``<!-- rendered:NAME -->`` and ``<!-- /rendered:NAME -->`` in one of the documents: README.md and
every ``docs/**/*.md``. ``BLOCKS`` maps each NAME to the function that renders it from the results (a
mapping from the file's path, relative to the repository, to its parsed JSON). Every block appears in
some document, none twice in one document; one block may appear in several (the same text in each).

    python benchmarks/render_readme.py                 # rewrite the blocks in README.md and docs/ (temp file + rename)
    python benchmarks/render_readme.py --check         # exit 1, naming each block that differs, with a diff
    python benchmarks/render_readme.py FILE ...        # only these documents (no check that every block is used)

``tests/test_readme.py`` runs the check, so a README or docs page that disagrees with the results fails the tests.
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
DOCS = REPO / "docs"
MARKER = re.compile(r"^<!-- (/?)rendered:([A-Za-z0-9_-]+) -->[ \t]*$", re.M)


def documents(root: Path = REPO) -> list[Path]:
    """README.md and every Markdown page under docs/, in a fixed order."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def blocks_in(text: str, source: str = "README.md") -> list[tuple[str, int, int]]:
    """(name, start, end) of each block's body in text; a marker without its pair, an unknown name or a
    block twice in the same document raises, naming ``source``."""
    found, open_name, open_end = [], None, 0
    for m in MARKER.finditer(text):
        closing, name = m[1] == "/", m[2]
        if name not in BLOCKS:
            raise ReadmeError(f"{source}: marker names an unknown block {name!r}; known: {', '.join(BLOCKS)}")
        if not closing:
            if open_name:
                raise ReadmeError(f"{source}: block {open_name!r} is not closed before block {name!r} opens")
            open_name, open_end = name, m.end()
        elif name != open_name:
            raise ReadmeError(f"{source} has <!-- /rendered:{name} --> without its opening marker")
        else:
            found.append((name, open_end, m.start()))
            open_name = None
    if open_name:
        raise ReadmeError(f"{source}: block {open_name!r} has no closing marker <!-- /rendered:{open_name} -->")
    names = [n for n, _, _ in found]
    if dup := {n for n in names if names.count(n) > 1}:
        raise ReadmeError(f"{source} has block(s) {', '.join(sorted(dup))} more than once")
    return found


def check_every_block_used(texts: Mapping[str, str]) -> None:
    """Raise, naming them, when some blocks appear in none of the documents (source → text)."""
    used = {n for source, text in texts.items() for n, _, _ in blocks_in(text, source)}
    if missing := [n for n in BLOCKS if n not in used]:
        raise ReadmeError(f"no document (README.md, docs/) has the marker(s) for block(s) {', '.join(missing)}")


def render(text: str, results: Mapping, source: str = "README.md") -> str:
    """text with every block's body replaced by what its function renders from results."""
    out, pos = [], 0
    for name, start, end in blocks_in(text, source):
        out += [text[pos:start], "\n", BLOCKS[name](results).rstrip("\n"), "\n"]
        pos = end
    return "".join(out) + text[pos:]


def check(text: str, results: Mapping, source: str = "README.md") -> list[str]:
    """The names of the blocks whose text in the document differs from what the results render, each with its diff."""
    rendered = render(text, results, source)
    old = {n: text[s:e] for n, s, e in blocks_in(text, source)}
    new = {n: rendered[s:e] for n, s, e in blocks_in(rendered, source)}
    problems = []
    for name in old:
        if old[name] != new[name]:
            diff = "".join(difflib.unified_diff(old[name].splitlines(True), new[name].splitlines(True),
                                                f"{source} (block {name})", f"rendered (block {name})"))
            problems.append(f"{source}: block {name} differs from its results:\n{diff}")
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


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a document disagrees")
    parser.add_argument("paths", nargs="*", type=Path, help="documents (default: README.md and docs/**/*.md)")
    args = parser.parse_args(argv)
    paths = args.paths or documents()
    texts = {relative(p): p.read_text() for p in paths}
    results = Results()
    try:
        if not args.paths:
            check_every_block_used(texts)
        if args.check:
            problems = [p for source, text in texts.items() for p in check(text, results, source)]
            for p in problems:
                print(p)
            if problems:
                print(f"{len(problems)} block(s) differ: run `make readme`")
            return 1 if problems else 0
        new = {source: render(text, results, source) for source, text in texts.items()}
    except ReadmeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, source in zip(paths, texts):
        if new[source] != texts[source]:
            write_atomically(path, new[source])
    return 0


if __name__ == "__main__":
    sys.exit(main())
