"""Everything edgekd prints: status lines and progress bars, on stderr, quiet on request.

Progress bars appear only on a terminal; elsewhere (CI, logs) each epoch prints one line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_console = Console(stderr=True, highlight=False)
_quiet = bool(os.environ.get("EDGEKD_QUIET"))


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    if not _quiet:
        _console.print(message, markup=False)


def warn(message: str) -> None:
    """Shown even when quiet: something the user should know about the result."""
    _console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def error(message: str) -> None:
    _console.print(f"[bold red]error:[/] {message}", soft_wrap=True)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self.progress, self.task = progress, task

    def update(self, *, advance: int = 1, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=advance, **fields)


@contextlib.contextmanager
def progress_bar(description: str, *, total: int, enabled: bool = True) -> Iterator[_Bar]:
    """A bar showing loss, accuracy and images/s; a silent stand-in when not on a terminal."""
    if not enabled or _quiet or not _console.is_terminal:
        yield _Bar(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  {task.fields[acc]}{task.fields[ips]:.0f} img/s"),
               TimeElapsedColumn())
    with Progress(*columns, console=_console, transient=True) as progress:
        task = progress.add_task(description, total=total, loss=0.0, acc="", ips=0.0)
        yield _Bar(progress, task)
