"""Logged requests by id, many at once (what ``/feedback`` checks its items against).

Each segment is opened once per lookup, newest first, and asked for every id still
missing in one query on its request-id index (the ids as one JSON array, joined with
``json_each``). Ids the server made carry their time and are not indexed (see the
writer): for them the same visit reads the blocks of the minute after each id's time
(one query for the block ranges, one for the candidates' meta). The work grows with
the number of ids and of segments, not with their product; a ``deadline`` (monotonic
seconds) stops it with :class:`DeadlineError` (HTTP 504).
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cd4ml.errors import DeadlineError
from cd4ml.predlog.damage import is_damage
from cd4ml.predlog.segments import (M_NROWS, M_RID, M_TABLE, M_TS, MADE_ID_SLACK,
                                            M_MODEL, M_VERSION, columns, dumps, loads,
                                            made_id_time, read_segment, record_starts,
                                            segments)
from cd4ml.predlog.tables import TableReader

__all__ = ["Lookup", "find_requests", "find_request"]

log = logging.getLogger("cd4ml.predlog")

_BY_INDEX = ("SELECT r.request_id, r.block, r.pos FROM json_each(?) w "
             "JOIN request_ids r ON r.request_id = w.value")
_RANGES = "SELECT id, ts_min, ts_max FROM blocks WHERE ts_max >= ? AND ts_min <= ?"
_BLOCKS = ("SELECT b.id, b.meta, b.inputs, b.rows FROM json_each(?) w "
           "JOIN blocks b ON b.id = w.value")


@dataclass(slots=True)
class Lookup:
    """What a lookup found (per id: n_rows, model, version, inputs, ts), the segments
    it could not read (path, problem), and the work it did."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    connections: int = 0
    queries: int = 0


def _check(deadline: float | None, n: int) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineError(f"looking up {n} request id(s) in the prediction log took longer "
                            f"than serving.request_timeout_s; send fewer feedback items per "
                            f"request")


def find_requests(directory: str | Path, request_ids: Iterable[str], *,
                  deadline: float | None = None, pid: int | None = None) -> Lookup:
    """The newest logged request of each id (ids not found are absent from ``found``).

    ``pid`` limits the search to that writer process's segments (the second look of
    ``/feedback`` after its worker flushed). A segment SQLite cannot read is skipped
    and listed in ``damaged``.
    """
    out = Lookup()
    missing = set(map(str, request_ids))
    n = len(missing)
    made = sorted((t, i) for i in missing if (t := made_id_time(i)) is not None)
    segs = segments(directory)
    if pid is not None:
        segs = [(s, p) for s, p in segs if p.name.endswith(f"-p{pid}.db")]
    starts = sorted({s for s, _ in segs})
    ends = dict(zip(starts, [*starts[1:], float("inf")], strict=False))
    times = [t for t, _ in made]
    for start, path in reversed(segs):
        if not missing:
            break
        _check(deadline, n)
        lo = bisect.bisect_left(times, start - MADE_ID_SLACK - 1)
        hi = bisect.bisect_right(times, ends[start] + 1)
        window = [(t, i) for t, i in made[lo:hi] if i in missing]
        try:
            with closing(read_segment(path)) as con:
                out.connections += 1
                if deadline is not None:  # a long statement is interrupted at the deadline
                    con.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
                _in_segment(con, missing, window, out, deadline, n)
        except sqlite3.DatabaseError as exc:
            if "interrupted" in str(exc) and deadline is not None:
                _check(deadline, n)
            if not is_damage(exc):
                raise
            log.warning("prediction log: segment %s cannot be read (%s); skipped",
                        path.name, exc)
            out.damaged.append((path, str(exc)))
    return out


def _in_segment(con: sqlite3.Connection, missing: set[str], made: list[tuple[float, str]],
                out: Lookup, deadline: float | None, n: int) -> None:
    """Find what one segment holds of ``missing`` (removing what it finds)."""
    try:
        hits = con.execute(_BY_INDEX, (dumps(list(missing)),)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a segment being created right now
            return
        raise
    out.queries += 1
    best: dict[str, tuple[int, int]] = {}
    for rid, block, pos in hits:
        if rid not in best or (block, pos) > best[rid]:
            best[rid] = (block, pos)
    if made:
        _check(deadline, n)
        by_time = _by_time(con, made, out)
        for rid, (block, pos) in by_time.items():
            if rid not in best or (block, pos) > best[rid]:
                best[rid] = (block, pos)
    if not best:
        return
    _check(deadline, n)
    wanted = sorted({b for b, _ in best.values()})
    rows = {r[0]: r[1:] for r in con.execute(_BLOCKS, (dumps(wanted),))}
    out.queries += 1
    tables = TableReader()
    for rid, (block, pos) in best.items():
        meta_raw, inputs_raw, rows_raw = rows[block]
        out.found[rid] = _record(con, tables, loads(meta_raw), inputs_raw, rows_raw, pos)
        missing.discard(rid)


def _by_time(con: sqlite3.Connection, made: list[tuple[float, str]],
             out: Lookup) -> dict[str, tuple[int, int]]:
    """Server-made ids (``(time, id)``, sorted) in the blocks of the minute after each
    id's time: (block, position) of the newest record of each."""
    windows: list[list[float]] = []  # merged [lo, hi] of the ids' windows
    for t, _ in made:
        lo, hi = t - 1, t + MADE_ID_SLACK + 1
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    ranges = con.execute(_RANGES, (windows[0][0], windows[-1][1])).fetchall()
    out.queries += 1
    los = [w[0] for w in windows]
    cand = []
    for block, ts_min, ts_max in ranges:
        k = bisect.bisect_right(los, ts_max) - 1  # the last window starting before ts_max
        if k >= 0 and windows[k][1] >= ts_min:
            cand.append(block)
    if not cand:
        return {}
    wanted = {i: t for t, i in made}
    found: dict[str, tuple[int, int]] = {}
    for block, meta_raw, _, _ in con.execute(_BLOCKS, (dumps(cand),)):
        for pos, m in enumerate(loads(meta_raw)):
            t = wanted.get(m[M_RID])
            if t is not None and t - 1 <= m[M_TS] <= t + MADE_ID_SLACK + 1:
                if m[M_RID] not in found or (block, pos) > found[m[M_RID]]:
                    found[m[M_RID]] = (block, pos)
    out.queries += 1
    return found


def _record(con: sqlite3.Connection, tables: TableReader, meta: list[list[Any]],
            inputs_raw: bytes, rows_raw: bytes, k: int) -> dict[str, Any]:
    import numpy as np

    m = meta[k]
    if m[M_TABLE] is None:
        inputs = columns(loads(inputs_raw)[k])
    else:
        off = int(record_starts(meta[:k + 1])[3][k])
        rows = np.frombuffer(rows_raw, dtype="<i4")[off:off + m[M_NROWS]]
        inputs = tables.input_lists(con, m[M_TABLE], rows)
    return {"n_rows": m[M_NROWS], "model": m[M_MODEL], "version": m[M_VERSION],
            "inputs": inputs, "ts": m[M_TS]}


def find_request(directory: str | Path, request_id: str) -> dict[str, Any] | None:
    """The newest logged request with this id: its n_rows, model, version, inputs.

    An id the server made carries its time and is looked for in the blocks of the
    minute after it (the writer does not index it); any other id is looked up in the
    request-id index (:func:`find_requests` of one id).
    """
    return find_requests(directory, [request_id]).found.get(request_id)
