"""Consoles and progress bars shared by the commands (the library itself never prints)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)

Advance = Callable[[int], None]


def _ignore(_: int) -> None:
    return None


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, unit: str, quiet: bool) -> Iterator[Advance]:
    """A rich progress bar on stderr; yields ``advance(n)``. Quiet: yields a no-op."""
    if quiet:
        yield _ignore
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
