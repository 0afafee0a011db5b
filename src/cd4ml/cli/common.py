"""What every ``cd4ml`` command shares: the options ``-p/--project``, ``--set`` and
``--json``, the two consoles, the JSON document, opening a project's stores with its
overrides, number formatting and the one-line error.

Output rules: ``--json`` prints exactly one JSON document on stdout and nothing else
there (progress and notes go to stderr); an error is one line on stderr, ``error: …``,
and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Project", "Sets", "Json", "Since", "Until", "err", "out", "emit_json", "fmt",
           "minute", "Col", "print_table", "fail", "project_stores", "STDERR_FD",
           "no_color", "HELP_MARKUP"]

Project = Annotated[Path, typer.Option("-p", "--project", help="project folder (cd4ml.yaml)")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="override key.path=value")]
Json = Annotated[bool, typer.Option("--json", help="one JSON document on stdout")]
#: a window of the prediction log (``cd4ml log …``, ``cd4ml monitor``)
Since = Annotated[str | None, typer.Option("--since", help="ISO time (UTC) or age: 30m, 2h, 7d")]
Until = Annotated[str | None, typer.Option("--until", help="ISO time (UTC) or age")]

#: where the helper processes a command starts write their output: this process's stderr
#: (file descriptor 2), so its stdout holds only what the command answers
STDERR_FD = 2


def no_color() -> bool:
    """Whether ``NO_COLOR`` asks for no colour (https://no-color.org: set and not empty).
    It wins over ``FORCE_COLOR`` and ``TERM``: no ANSI escape at all."""
    return os.environ.get("NO_COLOR", "") != ""


def _console(*, stderr: bool) -> Console:
    """A console for stdout or stderr. Under ``NO_COLOR``: no style (``color_system``
    None) and a terminal only if the stream is one, whatever ``FORCE_COLOR`` says (a
    forced terminal draws progress bars with cursor codes)."""
    if not no_color():
        return Console(stderr=stderr, highlight=False)
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, color_system=None,
                   force_terminal=stream.isatty())


#: progress, notes and reports of failures
err = _console(stderr=True)
#: what a command answers
out = _console(stderr=False)
#: how typer draws ``--help``: with rich's panels, or under ``NO_COLOR`` as plain text
#: (typer's rich console keeps bold and dim when ``FORCE_COLOR`` is set)
HELP_MARKUP = None if no_color() else "rich"


def emit_json(doc: Any) -> None:
    """``doc`` as the command's one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fmt(v: Any) -> str:
    """Floats with two decimals, or four below 10 (an AUC of 0.9031, a WMAE of 1,551.20).

    >>> fmt(1551.2), fmt(0.90312), fmt(3), fmt(None)
    ('1,551.20', '0.9031', '3', 'None')
    """
    if not isinstance(v, float):
        return str(v)
    return f"{v:,.2f}" if abs(v) >= 10 else f"{v:.4f}"


def minute(stamp: Any) -> str:
    """A stored time to the minute, as stored (UTC): ``2026-12-04 19:48``; ``-`` for none.

    >>> minute("2026-12-04 19:48:03.120+00:00"), minute(None)
    ('2026-12-04 19:48', '-')
    """
    return str(stamp)[:16] if stamp else "-"


class Col(NamedTuple):
    """A column of :func:`print_table`: its header, and whether its cells are kept whole
    (never wrapped nor cut: names, ids, versions, aliases, figures)."""

    header: str
    whole: bool = False


#: a wrapped column is given at least its longest word, up to this many characters
#: (a longer word, e.g. a request's JSON inputs, is folded)
_WORD = 20


def _min_width(col: Col, cells: list[str]) -> int:
    """The narrowest ``col`` may be: its widest cell when whole, else its longest word
    (at most :data:`_WORD`)."""
    if col.whole:  # a cell may hold lines (a version's aliases, one per line)
        return max(len(line) for text in (col.header, *cells) for line in text.splitlines()
                   or [""])
    words = [len(w) for text in (col.header, *cells) for w in text.split()]
    return min(_WORD, max(words, default=1))


def print_table(columns: list[Col], rows: list[list[str]], *, optional: int = 0) -> None:
    """``rows`` on stdout as a table without borders, as wide as the terminal.

    Whole columns are never wrapped nor cut; the others wrap at spaces, and fold only a
    word longer than :data:`_WORD`, so no character is lost. The last ``optional``
    columns are left out, from the right, while the table would not fit the terminal
    otherwise (``--json`` has every field).
    """
    widths = [_min_width(col, [row[i] for row in rows]) for i, col in enumerate(columns)]
    keep = len(columns)
    while keep > len(columns) - optional and sum(widths[:keep]) + 2 * (keep - 1) > out.width:
        keep -= 1
    table = Table(box=None, pad_edge=False)
    for col, width in zip(columns[:keep], widths):
        table.add_column(col.header, no_wrap=col.whole, overflow="fold", min_width=width)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row[:keep]))  # as written, not markup
    out.print(table)


def fail(exc: BaseException) -> None:
    """One readable line on stderr (never wrapped), exit 1."""
    sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
    sys.exit(1)


@contextmanager
def project_stores(project: Path, set_: list[str] | None = None) -> Iterator[tuple[Any, Any]]:
    """The project's config (with the ``--set`` overrides) and its stores, open while
    the block runs: the stores the overrides name (``store.metadata_url=…``)."""
    from cd4ml.pipeline.run import open_project

    cfg, _, stores, _ = open_project(project, set_)
    with stores:
        yield cfg, stores
