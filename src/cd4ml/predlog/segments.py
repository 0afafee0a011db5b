"""The log's folder: SQLite segments named by period, their schema, their connections."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.errors import Cd4mlError

__all__ = ["M_SEQ", "M_RID", "M_TS", "M_MODEL", "M_VERSION", "M_ARM", "M_ENDPOINT", "M_LATENCY",
           "M_NROWS", "M_CTYPE", "M_NF", "M_REQLEN", "M_TABLE", "M_TRUNC", "M_OUT", "M_EVENT",
           "event_time", "segments",
           "segment_path", "period_name", "connect", "read_only", "columns", "loads", "dumps",
           "new_request_id", "connect_segment", "read_segment", "check_format",
           "segment_format", "made_id_time", "made_id_times", "MADE_ID_SLACK", "SCHEMA", "STATE",
           "LOG_FORMAT", "READ_FORMATS", "sqlite_length_limit", "record_starts", "output_widths",
           "output_names"]

_SEG = re.compile(r"^seg-(\d{8}T\d{2})(?:-p\d+)?\.db$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, session TEXT NOT NULL, seq_first INTEGER NOT NULL,
    n INTEGER NOT NULL, ts_min REAL NOT NULL, ts_max REAL NOT NULL, n_rows INTEGER NOT NULL,
    meta BLOB NOT NULL, inputs BLOB NOT NULL, requests BLOB, features BLOB NOT NULL,
    rows BLOB NOT NULL, outputs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_ts_min ON blocks (ts_min);
CREATE INDEX IF NOT EXISTS blocks_ts_max ON blocks (ts_max);
CREATE INDEX IF NOT EXISTS blocks_session ON blocks (session);
CREATE TABLE IF NOT EXISTS request_ids (
    request_id TEXT NOT NULL, block INTEGER NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (request_id, block, pos)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feature_names (
    model TEXT NOT NULL, version INTEGER NOT NULL, names TEXT NOT NULL,
    PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS feature_tables (
    tab TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER, n_rows INTEGER NOT NULL,
    names TEXT NOT NULL, inputs BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS feature_rows (
    tab TEXT NOT NULL, rows BLOB NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS feature_rows_tab ON feature_rows (tab);
CREATE TABLE IF NOT EXISTS feedback (
    ts REAL NOT NULL, request_id TEXT, row INTEGER, keys TEXT, actual REAL, reward REAL);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
"""
STATE = """
CREATE TABLE IF NOT EXISTS losses (
    detected_at REAL NOT NULL, session TEXT NOT NULL, pid INTEGER, accepted INTEGER NOT NULL,
    flushed INTEGER NOT NULL, lost INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS set_aside (
    at REAL NOT NULL, file TEXT NOT NULL, moved_to TEXT NOT NULL, problem TEXT NOT NULL);
"""


#: fields of a record in a block's ``meta`` list, in order (``blocks.encode_block``);
#: ``M_TRUNC`` is there only for a record whose body was stored truncated: ``[full
#: length, sha256 hex of the whole body]`` (``M_REQLEN`` is then the stored length);
#: ``M_OUT`` only for a record with several outputs per row (a classifier's label and
#: probabilities): their names, ``M_TRUNC`` being null if the body was stored whole;
#: ``M_EVENT`` only for a record with an event time (epoch seconds: the request's
#: ``X-Event-Time``), ``M_TRUNC`` and ``M_OUT`` being null where the record has none
#: (a list of log format 2 never has it: the record has no event time)
(M_SEQ, M_RID, M_TS, M_MODEL, M_VERSION, M_ARM, M_ENDPOINT, M_LATENCY, M_NROWS, M_CTYPE, M_NF,
 M_REQLEN, M_TABLE, M_TRUNC, M_OUT, M_EVENT) = range(16)

#: a request id the server made starts with its time (ms since the epoch, 12 hex digits),
#: like a UUIDv7; the log finds such an id by time instead of indexing it (see writer)
#: such an id goes unindexed when its record was logged within this many seconds of it
MADE_ID_SLACK = 60.0


def new_request_id() -> str:
    """A request id for a request that came without one: time-ordered, 32 hex digits."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def made_id_time(request_id: str) -> float | None:
    """The time in a server-made request id (seconds), None for any other id.

    Any 32-character id in lower case whose first 12 characters parse as hexadecimal
    counts (the writer calls this for every record; a regex cost it twice as much): an
    id is left unindexed only when its time is also within ``MADE_ID_SLACK`` of its
    record's, and then the lookup by time finds it whatever its other characters are.
    """
    if len(request_id) == 32 and request_id == request_id.lower():
        try:
            return int(request_id[:12], 16) / 1000
        except ValueError:
            return None
    return None


_HEX = np.full(256, -1, dtype=np.int64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX_WEIGHTS = 16 ** np.arange(11, -1, -1, dtype=np.int64)


def made_id_times(request_ids: Sequence[str]) -> np.ndarray:
    """:func:`made_id_time` of many ids (NaN for None), the same values; the writer runs
    it on every flush.

    When every id looks like a server-made one (32 lower-case ASCII characters: the
    common case), a few calls on the joined string and one table lookup do it without a
    Python step per id; otherwise each id goes through ``made_id_time``.
    """
    n = len(request_ids)
    joined = "".join(request_ids)
    if n and len(joined) == 32 * n and joined.isascii() and joined == joined.lower() \
            and set(map(len, request_ids)) == {32}:
        codes = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(n, 32)
        digits = _HEX[codes[:, :12]]
        if (digits >= 0).all():
            return (digits @ _HEX_WEIGHTS) / 1000
    return np.array([np.nan if t is None else t for t in map(made_id_time, request_ids)],
                    dtype=float)


def record_starts(meta: list[list[Any]]) -> tuple[Any, Any, Any, Any]:
    """Per record of a block's ``meta``: its rows, whether it holds table rows, and
    where its rows start among the block's predictions and among its table rows."""
    n = np.fromiter((m[M_NROWS] for m in meta), dtype=np.int64, count=len(meta))
    ref = np.fromiter((m[M_TABLE] is not None for m in meta), dtype=bool, count=len(meta))
    return n, ref, np.cumsum(n) - n, np.cumsum(n * ref) - n * ref


def output_names(m: list[Any]) -> list[str] | None:
    """A record's output names when it has several outputs per row, else None (one
    output, ``prediction``)."""
    return m[M_OUT] if len(m) > M_OUT else None


def output_widths(meta: list[list[Any]]) -> Any:
    """Per record of a block's ``meta``: its outputs per row (1 but for a record with
    ``M_OUT``); its outputs are ``n_rows x width`` values, row-major."""
    return np.fromiter((1 if len(m) <= M_OUT or m[M_OUT] is None else len(m[M_OUT])
                        for m in meta), dtype=np.int64, count=len(meta))


def event_time(m: list[Any]) -> float | None:
    """A record's event time (epoch seconds), None for a record without one."""
    return m[M_EVENT] if len(m) > M_EVENT else None


try:
    import orjson
    from orjson import loads

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    loads = json.loads

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=str).encode()


def columns(raw: str | bytes | list[Any] | dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The logged request rows as columns: rows (objects) with field names in lower case,
    or columns as they were logged (an object of lists, names as given)."""
    recs = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    if isinstance(recs, dict):
        return {str(k): list(v) for k, v in recs.items()}
    cols: dict[str, list[Any]] = {}
    for i, rec in enumerate(recs):
        for k, v in rec.items():
            cols.setdefault(str(k).lower(), [None] * i).append(v)
        for col in cols.values():
            if len(col) < i + 1:
                col.append(None)
    return cols


#: the layout of a segment (``PRAGMA user_version``) this cd4ml writes; 2: features by
#: reference; 3: a record may hold its event time (``M_EVENT``, after ``M_TRUNC`` and
#: ``M_OUT``): a cd4ml that writes format 2 would misread such a record, so it refuses
#: the segment by its format instead
LOG_FORMAT = 3
#: the formats this cd4ml reads: a segment of format 2 is one whose records have no
#: event time (a writer appending to one turns it into format 3, which holds its blocks
#: as they are)
READ_FORMATS = (2, 3)


def _open(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages stay cached
    return con


def connect(path: Path, schema: str) -> sqlite3.Connection:
    con = _open(path)
    con.executescript(schema)
    return con


def segment_format(con: sqlite3.Connection) -> int | None:
    """The log format of a segment's blocks (``PRAGMA user_version``; 0 for a segment
    written before format 2), None for one that holds no table yet."""
    if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'blocks'").fetchone():
        return None
    return con.execute("PRAGMA user_version").fetchone()[0]


def check_format(con: sqlite3.Connection, path: Path) -> None:
    """Refuse a segment that holds blocks in a log format this cd4ml does not read."""
    fmt = segment_format(con)
    if fmt is not None and fmt not in READ_FORMATS:
        con.close()
        older = ", ".join(map(str, READ_FORMATS[:-1]))
        raise Cd4mlError(f"prediction log segment {path}: log format {fmt}, this cd4ml "
                         f"reads and writes format {LOG_FORMAT}; move the segments of the "
                         f"other cd4ml out of {path.parent} (it also reads format {older}, "
                         f"records without event times)")


def connect_segment(path: Path) -> sqlite3.Connection:
    """A writing connection to a segment, created in this cd4ml's format if new (an
    older format it reads is raised to this one: its blocks are valid in it)."""
    con = _open(path)
    check_format(con, path)
    # one transaction: a reader never sees the tables of a new segment without its format
    con.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {LOG_FORMAT}; COMMIT;")
    return con


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a segment: readers never create or change one."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def read_segment(path: Path) -> sqlite3.Connection:
    """A read-only connection to a segment in this cd4ml's format (else a clear error)."""
    con = read_only(path)
    check_format(con, path)
    return con


def sqlite_length_limit(con: sqlite3.Connection | None = None) -> int:
    """SQLite's limit on a string, BLOB or row (bytes) on ``con``, or on a new
    connection (the build's default, 1e9 unless lowered)."""
    if con is not None:
        return con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    probe = sqlite3.connect(":memory:")
    try:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    finally:
        probe.close()


def period_name(ts: float, hours: int) -> str:
    start = int(ts // (hours * 3600)) * hours * 3600
    return datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%dT%H")


def period_start(name: str) -> float:
    return datetime.strptime(name, "%Y%m%dT%H").replace(tzinfo=timezone.utc).timestamp()


def segment_path(directory: Path, period: str, pid: int) -> Path:
    """The segment a writer process appends to in a period (:func:`period_name`): one
    file per process, so that the workers of a server never wait on each other's
    commits."""
    return directory / f"seg-{period}-p{pid}.db"


def segments(directory: str | Path) -> list[tuple[float, Path]]:
    """(period start, path) of every segment, oldest first (several per period: one per
    writer process)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _SEG.match(p.name)
        if m:
            out.append((period_start(m.group(1)), p))
    return sorted(out)


