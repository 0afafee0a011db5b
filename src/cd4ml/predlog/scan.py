"""Visiting the segments a read needs: which ones a time window touches, their blocks in
the window, a query run on each, a filter of records by window, model and version.

A segment SQLite cannot read is skipped with a warning (the next writer to start sets
it aside, damage.py); one being created right now (no table yet) holds nothing.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from dataclasses import dataclass
from typing import Any, TypeVar

from cd4ml.predlog.damage import is_damage
from cd4ml.predlog.segments import (M_EVENT, M_MODEL, M_RID, M_TS, M_VERSION, read_segment,
                                    segments)

__all__ = ["in_window", "keep_test", "rows", "segment_rows", "visit", "blocks", "BLOCKS",
           "window_args", "BlockInfo", "block_index", "block_key"]

log = logging.getLogger("cd4ml.predlog")

T = TypeVar("T")


def in_window(directory: Path, since: float | None, until: float | None) -> Iterator[Path]:
    """The segments whose period may hold records of ``[since, until)``, oldest first."""
    segs = segments(directory)
    starts = sorted({start for start, _ in segs})
    ends = {s: e for s, e in zip(starts, [*starts[1:], float("inf")], strict=False)}
    for start, path in segs:
        end = ends[start]
        if until is not None and start > until:
            continue
        if since is not None and end <= since:
            continue
        yield path


def keep_test(since: float | None, until: float | None, model: str | None,
              version: int | None, request_id: str | None = None, *,
              event_since: float | None = None, event_until: float | None = None,
              ) -> Callable[[list[Any]], bool]:
    """A test of one record's meta list against the filters: ``since <= ts < until``,
    and with either event bound ``event_since <= event time < event_until`` (a record
    without an event time fails it). The event bounds choose records, not segments or
    blocks (nothing indexes event times): the read is bounded by ``since``/``until``."""
    def keep(m: list[Any]) -> bool:
        return ((since is None or m[M_TS] >= since) and (until is None or m[M_TS] < until)
                and (model is None or m[M_MODEL] == model)
                and (version is None or m[M_VERSION] == version)
                and (request_id is None or m[M_RID] == request_id))
    if event_since is None and event_until is None:
        return keep
    lo = -math.inf if event_since is None else event_since
    hi = math.inf if event_until is None else event_until

    def keep_event(m: list[Any]) -> bool:
        return len(m) > M_EVENT and lo <= m[M_EVENT] < hi and keep(m)
    return keep_event


def rows(directory: Path, sql: str, args: list[Any], since: float | None,
         until: float | None) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
    """The rows ``sql`` gives in each segment of the window, with their connection."""
    for path in in_window(directory, since, until):
        yield from segment_rows(path, sql, args)


def segment_rows(path: Path, sql: str,
                 args: list[Any]) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
    """The rows ``sql`` gives in one segment (none if it is gone or being created)."""
    if not path.exists():  # deleted by retention, or set aside, since it was listed
        return
    try:
        with closing(read_segment(path)) as con:
            con.row_factory = sqlite3.Row
            try:
                cur = con.execute(sql, args)
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return
                raise
            for row in cur:
                yield con, row
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        _skipped(path, exc)


def visit(directory: Path, fn: Callable[[sqlite3.Connection, str], T],
          only: set[str] | None = None) -> Iterator[T]:
    """``fn`` of each segment's connection (rows as ``sqlite3.Row``) and file name, oldest
    first (``only``: the segments of these file names)."""
    for _, path in segments(directory):
        if (only is not None and path.name not in only) or not path.exists():
            continue
        try:
            with closing(read_segment(path)) as con:
                con.row_factory = sqlite3.Row
                try:
                    got = fn(con, path.name)
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        continue
                    raise
            yield got
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            _skipped(path, exc)


def _skipped(path: Path, exc: BaseException) -> None:
    log.warning("prediction log: segment %s cannot be read (%s); skipped (the next "
                "writer to start sets it aside)", path.name, exc)


#: the blocks of a segment that may hold records of a window, in the order readers give
BLOCKS = "SELECT {cols} FROM blocks WHERE ts_max >= ? AND ts_min < ? ORDER BY ts_min, id"


def window_args(since: float | None, until: float | None) -> list[float]:
    """The arguments of :data:`BLOCKS` for a window (open ends as the largest floats)."""
    return [-1e308 if since is None else since, 1e308 if until is None else until]


def blocks(directory: Path, cols: str, since: float | None,
           until: float | None) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
    """The blocks that may hold records of the window, oldest first in each segment."""
    yield from rows(directory, BLOCKS.format(cols=cols), window_args(since, until), since,
                    until)


def block_key(segment: str, r: Any) -> str:
    """A block's identity: its segment's file name, its id and the writer session and
    first sequence number that wrote it (a segment set aside and made anew under the
    same name restarts its ids; the session tells its blocks apart)."""
    return f"{segment}/{r['id']}/{r['session']}/{r['seq_first']}"


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """One block of the log, from its index entry (nothing of it decoded): ``n``
    records holding ``rows`` predictions answered between ``ts_min`` and ``ts_max``."""

    key: str
    segment: str
    id: int
    ts_min: float
    ts_max: float
    n: int
    rows: int


def block_index(directory: str | Path, since: float | None = None,
                until: float | None = None) -> list[BlockInfo]:
    """The blocks that may hold records of ``[since, until)`` (all of them without
    bounds), oldest segment first, by ``ts_min`` in each: what a cache of per-block
    summaries keys on (a block never changes once written)."""
    sql = BLOCKS.format(cols="id, session, seq_first, ts_min, ts_max, n, n_rows")
    return [BlockInfo(block_key(con_path.name, r), con_path.name, int(r["id"]),
                      float(r["ts_min"]), float(r["ts_max"]), int(r["n"]), int(r["n_rows"]))
            for con_path in in_window(Path(directory), since, until)
            for _, r in segment_rows(con_path, sql, window_args(since, until))]
