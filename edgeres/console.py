"""One place for terminal output: a rich console on stderr and progress bars.

Text from a user or from disk (paths, model names, artifact ids, error messages) always prints verbatim.
``say`` therefore reads markup only as a leading style, the one way edgeres styles a status line:
``say(f"[green]saved[/] {artifact_id}")`` styles "saved", ``say(f"[yellow]{text}")`` styles the whole
line; everything after that prefix is printed as it is, brackets and all. ``warn``, ``error`` and
``plain`` read no markup at all. On ``out`` (full rich markup, for tables), put such text in a
``rich.text.Text`` or through ``escape``. Neither console turns ``:name:`` into emoji or re-wraps a line,
so a path prints as it is and can be copied.

Library code reports only through ``say``, ``plain``, ``warn``, ``progress`` and ``progress_line`` (all on
stderr); the CLI decides what is shown with ``configure`` (``--quiet`` silences status and progress, never
warnings or errors). Results go to stdout through ``show`` (a table: drawn on a terminal, plain lines
elsewhere) or ``emit_json`` (``--json``), which ``stdout_to_stderr`` keeps clean while the command works.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from typing import Any, Iterator

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

console = Console(stderr=True, highlight=False, emoji=False)  # status and progress (--quiet silences them)
alerts = Console(stderr=True, highlight=False, emoji=False)  # warnings and errors: always shown
out = Console(highlight=False, emoji=False)  # results: tables, paths

__all__ = ["console", "out", "say", "styled", "plain", "warn", "error", "escape", "progress", "progress_line",
           "configure", "live", "table", "show", "plain_lines", "emit_json", "stdout_to_stderr"]


def configure(*, quiet: bool = False) -> None:
    """The CLI's say over status output: ``quiet`` drops status lines and progress (warnings and errors
    still print)."""
    console.quiet = quiet


def live() -> bool:
    """Whether status goes to a terminal (a live progress bar) rather than a log, a pipe or CI (lines)."""
    return console.is_terminal


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
    for the one piece of markup it reads. A line that begins with ``warning:`` is a warning, shown
    under ``--quiet`` too (``warn`` says so directly)."""
    text = styled(message) if isinstance(message, str) else message
    (alerts if text.plain.startswith("warning:") else console).print(text, soft_wrap=True)


def plain(message: str) -> None:
    """A status line printed verbatim: no markup is read in it."""
    console.print(Text(message), soft_wrap=True)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr, the message verbatim."""
    alerts.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True)


def error(message: str) -> None:
    """``error: <message>`` on stderr, the message verbatim."""
    alerts.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def progress_line(message: str) -> None:
    """One progress line (an epoch, a stage) for a log, a pipe or CI; nothing on a terminal, where the bar
    shows it."""
    if not live():
        plain(message)


class _Progress(Progress):
    """On a terminal, a live bar. Elsewhere no bar (it would print once, at the end, cut to the width):
    with ``log``, each step of a task prints a line of its own (a layer, a stage, a package); without, the
    caller prints its own lines with ``progress_line`` (training: one per epoch, not per batch)."""

    def __init__(self, *columns: Any, log: bool, **kwargs: Any):
        super().__init__(*columns, **kwargs)
        self.log = log

    def update(self, task_id, *, advance: float | None = None, **fields: Any) -> None:
        super().update(task_id, advance=advance, **fields)
        if self.disable and self.log and advance:
            task = self._tasks[task_id]
            status = task.fields.get("status")
            steps = f"{task.completed:g}/{task.total:g}" if task.total is not None else f"{task.completed:g}"
            plain(f"{task.description}: {steps}" + (f" {status}" if status else ""))

    def advance(self, task_id, advance: float = 1) -> None:
        self.update(task_id, advance=advance)


def progress(log: bool = True) -> Progress:
    """A progress bar on stderr (off a terminal: lines, see ``_Progress``); its description and status
    print verbatim."""
    return _Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, disable=not live(), log=log,
    )


# -- results on stdout ------------------------------------------------------------------------------------
def table(*columns: str, title: str | Text | None = None, caption: str | Text | None = None) -> Table:
    """A results table for ``show``. Cells that are text from disk should be ``Text`` (not markup)."""
    return Table(*columns, title=title, caption=caption, caption_justify="left")


def _cell_text(cell: Any) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    else:
        try:
            text = Text.from_markup(str(cell)).plain
        except MarkupError:
            text = str(cell)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()).replace("\t", " ")


def plain_lines(table: Table) -> list[str]:
    """``table`` as plain lines: ``# title``, the header, one tab-separated line per row with every value
    in full (a multi-line cell joined with ``; ``), ``# caption``."""
    lines = [f"# {_cell_text(table.title)}"] if table.title else []
    lines.append("\t".join(_cell_text(column.header) for column in table.columns))
    columns = [list(column.cells) for column in table.columns]
    lines += ["\t".join(_cell_text(cells[i]) for cells in columns) for i in range(table.row_count)]
    if table.caption:
        lines.append(f"# {_cell_text(table.caption)}")
    return lines


def show(table: Table) -> None:
    """A results table on stdout. On a terminal, drawn to fit: text wraps, and a value too wide for its
    column folds onto more lines, never cut to an ellipsis. Elsewhere (a pipe, a file, CI) ``plain_lines``,
    so that grep, cut and awk see whole names and numbers at any width."""
    if out.is_terminal:
        for column in table.columns:
            column.overflow, column.no_wrap = "fold", False
        out.print(table)
        return
    for line in plain_lines(table):
        out.file.write(line + "\n")
    out.file.flush()


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def emit_json(document: Any) -> None:
    """``document`` as one JSON document on stdout (indented, keys in the order given; NaN as null)."""
    sys.stdout.write(json.dumps(_finite(document), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While the block runs, what anything writes to stdout (edgeres, a library's logger, a child process)
    goes to stderr, so that what the command prints after it (``emit_json``) is all stdout holds."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    fd = saved = None
    try:
        fd = sys.stdout.fileno()
        saved = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
    except (AttributeError, OSError, ValueError):  # no file descriptors (a test runner's buffers)
        if saved is not None:
            os.close(saved)
        fd = saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            try:
                sys.stdout.flush()  # what a library buffered in stdout goes to stderr too
            finally:
                os.dup2(saved, fd)
                os.close(saved)
