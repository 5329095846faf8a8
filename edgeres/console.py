"""One place for terminal output: a rich console on stderr and progress bars.

Text from a user or from disk (paths, model names, artifact ids, error messages) always prints verbatim.
``say`` therefore reads markup only as a leading style, the one way edgeres styles a status line:
``say(f"[green]saved[/] {artifact_id}")`` styles "saved", ``say(f"[yellow]{text}")`` styles the whole
line; everything after that prefix is printed as it is, brackets and all. ``warn``, ``error`` and
``plain`` read no markup at all. On ``out`` (full rich markup, for tables), put such text in a
``rich.text.Text`` or through ``escape``. Neither console turns ``:name:`` into emoji or re-wraps a line,
so a path prints as it is and can be copied.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True, highlight=False, emoji=False)  # status, progress, errors
out = Console(highlight=False, emoji=False)  # results: tables, paths

__all__ = ["console", "out", "say", "styled", "plain", "warn", "error", "escape", "progress"]


_STYLES = frozenset({"green", "yellow", "red", "dim", "bold", "bold red", "cyan", "magenta"})
_LEADING_STYLE = re.compile(r"\[(?P<style>[a-z ]+)\](?:(?P<head>[^\[]*)\[/\])?")


def styled(message: str) -> Text:
    """``message`` as text: a leading ``[style]head[/]`` styles the head, a leading ``[style]`` alone the
    whole line (up to a final ``[/]``); nothing else is markup."""
    match = _LEADING_STYLE.match(message)
    if not match or match["style"] not in _STYLES:
        return Text(message)
    if match["head"] is not None:
        return Text.assemble((match["head"], match["style"]), message[match.end():])
    return Text(message[match.end():].removesuffix("[/]"), style=match["style"])


def say(message: str | Text) -> None:
    """A status line for the user (stderr, so stdout stays machine-readable); see the module docstring
    for the one piece of markup it reads."""
    console.print(styled(message) if isinstance(message, str) else message, soft_wrap=True)


def plain(message: str) -> None:
    """A status line printed verbatim: no markup is read in it."""
    console.print(Text(message), soft_wrap=True)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr, the message verbatim."""
    console.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True)


def error(message: str) -> None:
    """``error: <message>`` on stderr, the message verbatim."""
    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def progress() -> Progress:
    """A progress bar on stderr; its description and status fields print verbatim."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )
