"""The terminal side of the CLI (rich): colours, tables and progress bars on a terminal,
plain text everywhere else, so that pipes and scripts get exactly what they parse.

``NO_COLOR`` (any value) turns styling and progress bars off; ``FORCE_COLOR`` turns them
on without a terminal (https://no-color.org, https://force-color.org)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich import box
from rich.color import ColorSystem
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.style import Style
from rich.table import Table

USER = "bold green"
AGENT = "bold cyan"
NOTE = "dim"
WARN = "bold yellow"
ERROR = "bold red"


def styled(stream: TextIO) -> bool:
    """Whether ``stream`` gets colours and progress bars."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # not a real file, or closed
        return False


def paint(text: str, style: str, stream: TextIO) -> str:
    """``text`` in ``style`` (ANSI) if ``stream`` is styled, else as it is."""
    if not text or not styled(stream):
        return text
    return Style.parse(style).render(text, color_system=ColorSystem.STANDARD)


def console(stream: TextIO) -> Console:
    return Console(
        file=stream,
        force_terminal=styled(stream),
        no_color=not styled(stream),
        highlight=False,
        soft_wrap=False,
    )


def table(rows: list[list[str]], out: TextIO | None = None) -> None:
    """A header row and its rows: a rich table on a terminal; else columns of plain text
    (aligned with spaces, one row per line) for scripts."""
    out = out or sys.stdout
    if not rows:
        return
    if styled(out):
        shown = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
        for name in rows[0]:
            shown.add_column(name, overflow="fold")
        for row in rows[1:]:
            shown.add_row(*row)
        console(out).print(shown)
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


@contextmanager
def progress(
    description: str, total: int | None, stream: TextIO | None = None
) -> Iterator[Callable[[int], None]]:
    """A progress bar on ``stream`` (stderr) while the block runs, if it is styled; yields
    ``advance(n)``. Lines printed meanwhile appear above the bar."""
    stream = stream or sys.stderr
    if not styled(stream):

        def nothing(n: int = 1) -> None:
            pass

        yield nothing
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stream),
        # Lines printed meanwhile go above the bar; stdout only when it is the terminal
        # too (a pipe or a file gets its lines as they are, not on the terminal).
        redirect_stdout=_isatty(sys.stdout),
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
