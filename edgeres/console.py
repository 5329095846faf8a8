"""One place for terminal output: a rich console on stderr and progress bars."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)  # status, progress, errors
out = Console(highlight=False)  # results: tables, paths


def say(message: str) -> None:
    """A status line for the user (stderr, so stdout stays machine-readable)."""
    console.print(message)


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )
