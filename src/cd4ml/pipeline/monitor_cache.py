"""Monitoring windows computed incrementally: a cache of what monitoring derives from each
block of the prediction log, so that judging a window decodes only the blocks nobody has
read before.

A block of the log never changes once written (its key, :func:`cd4ml.predlog.block_index`,
names its segment, id and the writer session that wrote it). The first time monitoring
reads a block for a model version, it decodes the block's rows of that version once,
adds what costs a model call per row (:func:`~cd4ml.pipeline.monitor_log.derive`: the
calibrated probability for CBPE, the reconstruction error, the training path's features
for skew) and its event time, and keeps the result in ``.cd4ml/monitor-cache.db`` (one
SQLite row per block and scope, the rows as compressed Arrow IPC, with the block's
log-time and event-time range). A window is then the cached rows of the blocks it
touches, cut exactly to the window (by log time, by event time or the last N rows),
with the feedback joined afresh (labels arrive late: they are never cached). The
statistics are computed on those rows as before, so a window's figures equal what
reading the log directly gives (a test holds them equal); nothing is approximated.

What adding a day of log costs: decoding and deriving that day's blocks, once. Judging
a window costs reading its cached rows (Arrow, no decoding of the log's own format, no
model call) and the statistics on them, in proportion to the window. The scope of a
cache row is the model version, its reference profile (by digest) and how event time is
read, so a new reference or another event-time column never reads a stale row; the rows
of segments that retention deleted are dropped (:meth:`PartCache.prune`). The cache is
only ever a copy: deleting the file loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PartCache", "window_frame", "CACHE_FORMAT", "cache_path"]

#: bumped whenever what a cache row holds changes: older rows are then never read
CACHE_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS parts (
    scope TEXT NOT NULL, key TEXT NOT NULL, segment TEXT NOT NULL, rows INTEGER NOT NULL,
    ts_min REAL, ts_max REAL, ev_min REAL, ev_max REAL, data BLOB,
    PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_segment ON parts (segment);
"""


def cache_path(root: Path) -> Path:
    """Where a project keeps its monitor cache."""
    return Path(root) / ".cd4ml" / "monitor-cache.db"


@dataclass(frozen=True, slots=True)
class Part:
    """One block's rows of one version (none: ``rows`` 0 and no data), with their
    log-time and event-time ranges (NaN where the block has no such time)."""

    key: str
    rows: int
    ts_min: float
    ts_max: float
    ev_min: float
    ev_max: float
    data: bytes | None


class PartCache:
    """The cache file: one row per (scope, block key)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)
        self.read = 0  #: cache rows read with their data
        self.written = 0  #: blocks decoded and stored

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> PartCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def get(self, scope: str, keys: list[str]) -> dict[str, Part]:
        """The cached parts of ``keys`` (those present)."""
        out: dict[str, Part] = {}
        for i in range(0, len(keys), 5000):
            chunk = json.dumps(keys[i:i + 5000])
            for r in self._con.execute(
                    "SELECT key, rows, ts_min, ts_max, ev_min, ev_max, data FROM parts "
                    "WHERE scope = ? AND key IN (SELECT value FROM json_each(?))",
                    (scope, chunk)):
                out[r[0]] = Part(r[0], int(r[1]), *(_nan(v) for v in r[2:6]), r[6])
        self.read += sum(1 for p in out.values() if p.data is not None)
        return out

    def put(self, scope: str, parts: list[Part]) -> None:
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.executemany(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(scope, p.key, p.key.split("/", 1)[0], p.rows, _null(p.ts_min),
                  _null(p.ts_max), _null(p.ev_min), _null(p.ev_max), p.data) for p in parts])
        self.written += len(parts)

    def prune(self, live_segments: set[str]) -> int:
        """Drop the rows of segments no longer in the log (retention deleted them, or
        they were set aside); how many rows went."""
        held = [r[0] for r in self._con.execute("SELECT DISTINCT segment FROM parts")]
        gone = [s for s in held if s not in live_segments]
        if not gone:
            return 0
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            cur = self._con.execute(
                "DELETE FROM parts WHERE segment IN (SELECT value FROM json_each(?))",
                (json.dumps(gone),))
        return int(cur.rowcount)


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _null(v: float) -> float | None:
    return None if v != v else float(v)


def _to_ipc(df: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema,
                        options=ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with ipc.open_stream(pa.py_buffer(data)) as r:
        return r.read_all()


def _concat(tables: list[Any]) -> pd.DataFrame:
    """The blocks' rows as one frame. A field typed differently in two blocks takes the
    type holding both (integers and reals: float64; anything else: text), as the log's
    own reader types a window."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not tables:
        return pd.DataFrame()
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    kinds: dict[str, set[Any]] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                kinds.setdefault(f.name, set()).add(f.type)
    fixed = []
    for t in tables:
        for name in t.column_names:
            types = kinds.get(name, set())
            if len(types) > 1 and not all(pa.types.is_integer(x) or pa.types.is_floating(x)
                                          for x in types):
                i = t.column_names.index(name)
                t = t.set_column(i, name, pc.cast(t.column(name), pa.string()))
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive").to_pandas()


def _scope(cfg: Any, row: dict[str, Any], event: str) -> str:
    digest = (row.get("lineage") or {}).get("reference") or "-"
    return f"{row['model_name']}@{row['version']}|{digest}|{event}|{CACHE_FORMAT}"


def _event_source(cfg: Any) -> str:
    """How the rows' event time is read, as part of the cache scope."""
    column = getattr(cfg.monitoring, "event_time", None)
    return f"column:{column}" if column else f"{cfg.task}:default"


def _event_seconds(cfg: Any, df: pd.DataFrame) -> np.ndarray:
    """Each row's event time in epoch seconds (NaN where it has none)."""
    from cd4ml.pipeline import monitor_log

    resolve = getattr(monitor_log, "event_times", None)
    if resolve is not None:
        times = resolve(cfg, df)
    else:  # the request's X-Event-Time only
        times = df["event_ts"] if "event_ts" in df else pd.Series(pd.NaT, index=df.index)
    times = pd.to_datetime(times, utc=True)
    ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    ns[times.isna().to_numpy()] = np.nan
    return ns / 1e9


def _decode(cfg: Any, stores: Any, ref: Any, manifest: dict[str, Any], memo: dict[str, Any],
            directory: Path, row: dict[str, Any], blocks: list[Any]) -> list[Part]:
    """The parts of blocks not yet cached: decoded once, derived, ready to store."""
    from cd4ml.pipeline.monitor_log import derive
    from cd4ml.predlog import batches

    if not blocks:
        return []
    lo = min(b.ts_min for b in blocks)
    hi = float(np.nextafter(max(b.ts_max for b in blocks), np.inf))
    df = batches(directory, since=lo, until=hi, model=row["model_name"],
                 version=row["version"], blocks=[b.key for b in blocks], with_block=True,
                 feedback=False).read_all().to_pandas()
    out = []
    groups = dict(tuple(df.groupby("block", sort=False))) if len(df) else {}
    for b in blocks:
        part = groups.get(b.key)
        if part is None:
            out.append(Part(b.key, 0, np.nan, np.nan, np.nan, np.nan, None))
            continue
        part = derive(cfg, stores, ref, part.drop(columns=["block"]).reset_index(drop=True),
                      manifest, memo)
        ev = _event_seconds(cfg, part)
        part = part.assign(**{"monitor.event": ev})
        ts = part["ts"].astype("int64").to_numpy() / 1e9
        has = np.isfinite(ev)
        out.append(Part(b.key, len(part), float(ts.min()), float(ts.max()),
                        float(ev[has].min()) if has.any() else np.nan,
                        float(ev[has].max()) if has.any() else np.nan, _to_ipc(part)))
    return out


def window_frame(cfg: Any, root: Path, stores: Any, row: dict[str, Any], ref: Any,
                 manifest: dict[str, Any], memo: dict[str, Any], *, since: float | None,
                 until: float | None, last: int | None = None, by: str = "time",
                 cache: PartCache | None = None) -> pd.DataFrame:
    """The window's rows as ``read_window`` gives them (feedback joined), with the
    :data:`~cd4ml.pipeline.monitor_log.DERIVED` columns and ``monitor.event``, from the
    cache (blocks not cached yet are decoded and stored first).

    ``by="time"``: ``since <= ts < until``; ``by="event"``: the same bounds on event
    time; ``last``: only the latest N (by log time, or by event time under ``event``).
    """
    from cd4ml.predlog import block_index, join_feedback, segments

    directory = cfg.serving.log.folder_in(root)
    event = _event_source(cfg)
    scope = _scope(cfg, row, event)
    own = cache is None
    cache = cache if cache is not None else PartCache(cache_path(root))
    lo = -np.inf if since is None else since
    hi = np.inf if until is None else until
    try:
        infos = block_index(directory) if by == "event" else block_index(directory, since,
                                                                           until)
        found: dict[str, Part] = {}

        def ensure(blocks: list[Any]) -> None:
            """Every one of ``blocks`` in ``found``: from the cache, or decoded now."""
            want = [b for b in blocks if b.key not in found]
            found.update(cache.get(scope, [b.key for b in want]))
            missing = [b for b in want if b.key not in found]
            if missing:
                made = _decode(cfg, stores, ref, manifest, memo, directory, row, missing)
                cache.put(scope, made)
                found.update({p.key: p for p in made})

        if last is not None and by == "time":  # the newest blocks until N rows are held
            newest = sorted(infos, key=lambda b: b.ts_max, reverse=True)
            i, step, held = 0, 8, 0
            while i < len(newest) and held < last:
                ensure(newest[i:i + step])
                held += sum(found[b.key].rows for b in newest[i:i + step])
                i, step = i + step, step * 2
            taken = [found[b.key] for b in newest[:i] if found[b.key].rows]
            floor = min((p.ts_min for p in taken), default=-np.inf) if held >= last \
                else -np.inf
            infos = [b for b in infos if b.ts_max >= floor]
        ensure(infos)
        parts = [found[b.key] for b in infos]
        if by == "event":
            wanted = [p for p in parts if p.rows and p.ev_max >= lo and p.ev_min < hi]
        else:
            wanted = [p for p in parts if p.rows and p.ts_max >= lo and p.ts_min < hi]
        tables = [_from_ipc(p.data) for p in wanted if p.data is not None]
        if cache.written:
            cache.prune({p.name for _, p in segments(directory)})
    finally:
        if own:
            cache.close()
    df = _concat(tables)
    if not len(df):
        return _empty(directory, row, since, until)
    t = (df["monitor.event"].to_numpy(np.float64) if by == "event"
         else df["ts"].astype("int64").to_numpy() / 1e9)
    keep = (t >= lo) & (t < hi)  # NaN (no event time) fails both
    df = df[keep]
    order = (["monitor.event", "ts", "request_id", "row"] if by == "event"
             else ["ts", "request_id", "row"])
    df = df.sort_values(order, kind="stable").reset_index(drop=True)
    if last is not None and len(df) > last:
        df = df.iloc[len(df) - last:].reset_index(drop=True)
    inputs = {c.removeprefix("input."): df[c].to_numpy(dtype=object)
              for c in df.columns if c.startswith("input.")}
    got = join_feedback(directory, df["request_id"].to_numpy(dtype=object),
                        df["row"].to_numpy(np.int64), inputs)
    df["actual"], df["reward"] = got["actual"], got["reward"]
    df["feedback_ts"] = pd.to_datetime(got["feedback_ts"], unit="s", utc=True)
    return df


def _empty(directory: Path, row: dict[str, Any], since: float | None,
           until: float | None) -> pd.DataFrame:
    """A window with no row: the log reader's empty frame (its fixed columns)."""
    from cd4ml.predlog import batches

    return batches(directory, since=0.0, until=0.0, model=row["model_name"],
                   version=row["version"]).read_all().to_pandas()
