"""Monitoring windows computed incrementally: a cache of what monitoring derives from each
block of the prediction log, so that judging a window decodes only the blocks nobody has
read before.

A block of the log never changes once written (its key, :func:`cd4ml.predlog.block_index`,
names its segment, id and the writer session that wrote it). The first time monitoring
reads a block for a model version, it decodes the block's rows of that version once,
adds what costs a model call per row (:func:`~cd4ml.pipeline.monitor_log.derive`: the
calibrated probability for CBPE, the reconstruction error, the training path's features
for skew) and its event time, and keeps the result in ``.cd4ml/monitor-cache.db``: per
block and scope its rows' log-time and event-time range, and the rows themselves in
parts (Arrow IPC streams of up to :data:`PART_ROWS` rows: blocks decoded together are
stored together, and small parts are merged). A window is then the cached rows of the
blocks it touches, cut exactly to the window (by log time, by event time or the last N
rows), with the feedback joined afresh (labels arrive late: they are never cached). The
statistics are computed on those rows as before, so a window's figures equal what
reading the log directly gives (a test holds them equal); nothing is approximated.

What adding a day of log costs: decoding and deriving that day's blocks, once. Judging
a window costs reading its cached rows (Arrow, no decoding of the log's own format, no
model call) and the statistics on them, in proportion to the window. A timeline also
keeps each window's judgement under a fingerprint of its rows, their feedback and the
settings (:meth:`PartCache.judged`): a window nothing changed in is not judged again,
one whose labels came since is. The scope of a cache row is the model version, its
reference profile (by digest), how event time is read and whether reconstruction errors
are wanted, so a new reference or another event-time column never reads a stale row;
the rows of segments that retention deleted are dropped (:meth:`PartCache.prune`). The
cache is only ever a copy: deleting the file loses nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.pipeline.event_time import UTC_NS

__all__ = ["PartCache", "window_frame", "block_parts", "CACHE_FORMAT", "cache_path",
           "fingerprint", "scope_of"]

#: bumped whenever what a cache row holds changes: older rows are then never read
CACHE_FORMAT = 2

#: rows a stored part holds at most: blocks decoded together are stored together
#: (one derive call, one Arrow stream), and small parts are merged up to this size
PART_ROWS = 65_536
#: small parts (under an eighth of PART_ROWS) a scope may hold before they are merged
SMALL_PARTS = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    scope TEXT NOT NULL, key TEXT NOT NULL, segment TEXT NOT NULL, part INTEGER,
    rows INTEGER NOT NULL, no_event INTEGER NOT NULL, ts_min REAL, ts_max REAL,
    ev_min REAL, ev_max REAL, PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_part ON blocks (part);
CREATE INDEX IF NOT EXISTS blocks_segment ON blocks (segment);
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, rows INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS judgements (
    scope TEXT NOT NULL, window TEXT NOT NULL, fingerprint TEXT NOT NULL,
    doc TEXT NOT NULL, PRIMARY KEY (scope, window)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS window_ids (
    scope TEXT NOT NULL, window TEXT NOT NULL, ids BLOB NOT NULL,
    PRIMARY KEY (scope, window)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    scope TEXT NOT NULL, name TEXT NOT NULL, marks TEXT NOT NULL,
    PRIMARY KEY (scope, name)) WITHOUT ROWID;
"""




def cache_path(root: Path) -> Path:
    """Where a project keeps its monitor cache."""
    return Path(root) / ".cd4ml" / "monitor-cache.db"


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """What the cache knows of one block for one scope: its rows of the version (0: none,
    and no ``part``), how many of them have no event time, their log-time and event-time
    ranges (NaN where none), and the stored part holding them."""

    key: str
    rows: int
    no_event: int
    ts_min: float
    ts_max: float
    ev_min: float
    ev_max: float
    part: int | None = None


class PartCache:
    """The cache file: per (scope, block) what :class:`Part` says, and the parts (Arrow
    IPC streams of decoded, derived rows) the blocks' rows are stored in."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)
        self.read = 0  #: stored parts read
        self.written = 0  #: blocks decoded and stored
        self.merged = 0  #: small parts merged into bigger ones
        self.reused = 0  #: window judgements reused
        self._fresh: dict[int, Any] = {}  # parts this object just wrote, as tables

    def forget(self) -> None:
        """Drop the tables of parts just written (they are read from the file again)."""
        self._fresh.clear()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> PartCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, scope: str, keys: list[str]) -> dict[str, Part]:
        """What the cache knows of ``keys`` (those it holds)."""
        out: dict[str, Part] = {}
        for i in range(0, len(keys), 5000):
            for r in self._con.execute(
                    "SELECT key, rows, no_event, ts_min, ts_max, ev_min, ev_max, part "
                    "FROM blocks WHERE scope = ? AND key IN (SELECT value FROM json_each(?))",
                    (scope, json.dumps(keys[i:i + 5000]))):
                out[r[0]] = Part(r[0], int(r[1]), int(r[2]), *(_nan(v) for v in r[3:7]),
                                 r[7])
        return out

    def put(self, scope: str, blocks: list[Part], table: Any | None) -> list[Part]:
        """Store one part (the Arrow ``table`` of the blocks' rows; None when no block has
        rows) and the blocks whose rows it holds; the blocks as stored (with the part's
        id). The table stays at hand for :meth:`tables` until :meth:`forget`."""
        data = None if table is None else _table_ipc(table)
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            part = None
            if table is not None:
                part = self._con.execute("INSERT INTO parts (scope, rows, data) VALUES (?, ?, ?)",
                                         (scope, table.num_rows, data)).lastrowid
                self._fresh[int(part)] = table
            self._con.executemany(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(scope, b.key, b.key.split("/", 1)[0], part if b.rows else None, b.rows,
                  b.no_event, _null(b.ts_min), _null(b.ts_max), _null(b.ev_min),
                  _null(b.ev_max)) for b in blocks])
        self.written += len(blocks)
        return [dataclasses.replace(b, part=part if b.rows else None) for b in blocks]

    def tables(self, parts: set[int]) -> list[Any]:
        """The stored parts' rows (Arrow tables), oldest first."""
        fresh = {p: self._fresh[p] for p in parts if p in self._fresh}
        ask = sorted(parts - set(fresh))
        got = [(r[0], r[1]) for r in self._con.execute(
            "SELECT id, data FROM parts WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ask),))] if ask else []
        if len(got) != len(ask):  # merged by another process meanwhile: a fresh lookup
            raise _Moved()
        self.read += len(got)
        fresh.update({pid: _from_ipc(d) for pid, d in got})
        return [fresh[p] for p in sorted(fresh)]

    def compact(self, scope: str) -> int:
        """Merge the scope's small parts (oldest first, up to :data:`PART_ROWS` rows a
        part) once more than :data:`SMALL_PARTS` wait; how many parts were merged."""
        small = [(int(r[0]), int(r[1])) for r in self._con.execute(
            "SELECT id, rows FROM parts WHERE scope = ? AND rows < ? ORDER BY id",
            (scope, PART_ROWS // 8))]
        if len(small) <= SMALL_PARTS:
            return 0
        groups: list[list[int]] = [[]]
        held = 0
        for pid, n in small:
            if groups[-1] and held + n > PART_ROWS:
                groups.append([])
                held = 0
            groups[-1].append(pid)
            held += n
        merged = 0
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            for ids in (g for g in groups if len(g) > 1):
                rows = self._con.execute(
                    "SELECT id, data FROM parts WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids),)).fetchall()
                if len(rows) != len(ids):  # another process merged them first
                    continue
                table = _concat_tables([_from_ipc(d) for _, d in sorted(rows)])
                new = self._con.execute(
                    "INSERT INTO parts (scope, rows, data) VALUES (?, ?, ?)",
                    (scope, table.num_rows, _table_ipc(table))).lastrowid
                self._con.execute(
                    "UPDATE blocks SET part = ? WHERE part IN (SELECT value FROM json_each(?))",
                    (new, json.dumps(ids)))
                self._con.execute("DELETE FROM parts WHERE id IN (SELECT value FROM "
                                  "json_each(?))", (json.dumps(ids),))
                merged += len(ids)
        self.merged += merged
        return merged

    def judged(self, scope: str, window: str, fingerprint: str,
               touched: set[str] | None = None) -> dict[str, Any] | None:
        """The judgement kept for a window whose rows, feedback and settings had this
        fingerprint (:func:`fingerprint`), or None; None too if any of its requests is
        in ``touched`` (request ids that got feedback since)."""
        r = self._con.execute("SELECT fingerprint, doc FROM judgements WHERE scope = ? AND "
                              "window = ?", (scope, window)).fetchone()
        if r is None or r[0] != fingerprint:
            return None
        if touched and (self.window_ids(scope, window) or set()) & touched:
            return None
        self.reused += 1
        return dict(json.loads(r[1]))

    def keep(self, scope: str, window: str, fingerprint: str, doc: dict[str, Any],
             ids: set[str] | None = None) -> None:
        """Keep a window's judgement under its fingerprint (replacing an older one), and
        the request ids of its rows if given (:meth:`window_ids`)."""
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.execute("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?)",
                              (scope, window, fingerprint, json.dumps(doc, default=_plain)))
            if ids is not None:
                blob = zlib.compress("\n".join(sorted(ids)).encode(), 1)
                self._con.execute("INSERT OR REPLACE INTO window_ids VALUES (?, ?, ?)",
                                  (scope, window, blob))

    def window_ids(self, scope: str, window: str) -> set[str] | None:
        """The request ids of a judged window's rows (None if not kept)."""
        r = self._con.execute("SELECT ids FROM window_ids WHERE scope = ? AND window = ?",
                              (scope, window)).fetchone()
        if r is None:
            return None
        text = zlib.decompress(r[0]).decode()
        return set(text.split("\n")) if text else set()

    def marks(self, scope: str, name: str) -> dict[str, int] | None:
        """The feedback marks (``predlog.feedback_marks``) kept under ``name``."""
        r = self._con.execute("SELECT marks FROM marks WHERE scope = ? AND name = ?",
                              (scope, name)).fetchone()
        return None if r is None else {k: int(v) for k, v in json.loads(r[0]).items()}

    def set_marks(self, scope: str, name: str, marks: dict[str, int]) -> None:
        self._con.execute("INSERT OR REPLACE INTO marks VALUES (?, ?, ?)",
                          (scope, name, json.dumps(marks)))

    def size(self, segment: str | None = None) -> dict[str, int]:
        """Blocks known, parts stored and their bytes (of one segment's blocks, if
        given: blocks only)."""
        if segment is not None:
            n = self._con.execute("SELECT COUNT(*) FROM blocks WHERE segment = ?",
                                  (segment,)).fetchone()[0]
            return {"blocks": int(n)}
        blocks = self._con.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        parts, size = self._con.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM parts").fetchone()
        return {"blocks": int(blocks), "parts": int(parts), "bytes": int(size)}

    def prune(self, live_segments: set[str]) -> int:
        """Drop what the cache holds of segments no longer in the log (retention deleted
        them, or they were set aside): their blocks, and every part holding any of their
        rows (the other blocks of such a part are decoded again when next asked for);
        how many blocks went."""
        held = [r[0] for r in self._con.execute("SELECT DISTINCT segment FROM blocks")]
        gone = json.dumps([s for s in held if s not in live_segments])
        if gone == "[]":
            return 0
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            parts = json.dumps([r[0] for r in self._con.execute(
                "SELECT DISTINCT part FROM blocks WHERE part IS NOT NULL AND segment IN "
                "(SELECT value FROM json_each(?))", (gone,))])
            cur = self._con.execute(
                "DELETE FROM blocks WHERE segment IN (SELECT value FROM json_each(?)) OR "
                "part IN (SELECT value FROM json_each(?))", (gone, parts))
            self._con.execute("DELETE FROM parts WHERE id IN (SELECT value FROM json_each(?))",
                              (parts,))
        return int(cur.rowcount)


def fingerprint(df: pd.DataFrame, *settings: Any) -> str:
    """What a window's judgement depends on: its rows (request id, row, log time), the
    feedback joined to them (actual, reward and when it came) and ``settings`` (any
    JSON-able values: the config sections judging reads). Late feedback changes it, so a
    window judged before its labels came is judged again."""
    h = hashlib.blake2b(digest_size=16)
    cols = [c for c in ("request_id", "row", "ts", "actual", "reward", "feedback_ts")
            if c in df.columns]
    h.update(json.dumps([len(df), cols, settings], sort_keys=True, default=str).encode())
    if len(df):
        h.update(pd.util.hash_pandas_object(df[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()


def _plain(v: Any) -> Any:
    """A numpy value as JSON takes it."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


class _Moved(Exception):
    """A part named by a block was merged away between the lookup and the read."""


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _null(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def _table_ipc(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    # uncompressed: on the ACS benchmark's 210,000 rows zstd made the parts 3.5x smaller
    # (26 MB against 91 MB, the log itself 79 MB) but took 1.37 s to read against 0.20 s,
    # a third of a warm 28-day timeline (benchmarks/monitor_incremental.py)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _from_ipc(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with ipc.open_stream(pa.py_buffer(data)) as r:
        return r.read_all()


def _concat_tables(tables: list[Any]) -> Any:
    """The tables as one. A field typed differently in two of them takes the type
    holding both (integers and reals: float64; anything else: text), as the log's own
    reader types a window."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    kinds: dict[str, set[Any]] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                kinds.setdefault(f.name, set()).add(f.type)
    text = {name for name, types in kinds.items() if len(types) > 1 and not all(
        pa.types.is_integer(x) or pa.types.is_floating(x) for x in types)}
    fixed = []
    for t in tables:
        for name in text & set(t.column_names):
            i = t.column_names.index(name)
            t = t.set_column(i, name, pc.cast(t.column(name), pa.string()))
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive")


def scope_of(cfg: Any, row: dict[str, Any], settings: Any) -> str:
    """What a cache row depends on besides its block: the version, its reference profile,
    where event times come from, whether reconstruction errors are wanted."""
    from cd4ml.pipeline.event_time import event_source

    digest = (row.get("lineage") or {}).get("reference") or "-"
    multi = "mv" if settings is not None and settings.multivariate else "-"
    return (f"{row['model_name']}@{row['version']}|{digest}|{event_source(cfg)[1]}|{multi}|"
            f"{CACHE_FORMAT}")


def _event_seconds(cfg: Any, df: pd.DataFrame) -> np.ndarray:
    """Each row's event time in epoch seconds (NaN where it has none)."""
    from cd4ml.pipeline.event_time import event_times

    times = event_times(cfg, df)
    ns = times.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    ns[times.isna().to_numpy()] = np.nan
    return ns / 1e9


def _chunks(blocks: list[Any]) -> list[list[Any]]:
    """Blocks decoded (and stored) together: consecutive, up to PART_ROWS rows."""
    out: list[list[Any]] = [[]]
    held = 0
    for b in blocks:
        if out[-1] and held + b.rows > PART_ROWS:
            out.append([])
            held = 0
        out[-1].append(b)
        held += b.rows
    return [c for c in out if c]


def _decode(cache: PartCache, scope: str, cfg: Any, stores: Any, ref: Any, settings: Any,
            manifest: dict[str, Any], memo: dict[str, Any], directory: Path,
            row: dict[str, Any], blocks: list[Any]) -> dict[str, Part]:
    """Blocks not cached yet: decoded, derived and stored, a chunk at a time."""
    import pyarrow as pa

    from cd4ml.pipeline.monitor_log import derive
    from cd4ml.predlog import batches

    out: dict[str, Part] = {}
    for chunk in _chunks(blocks):
        lo = min(b.ts_min for b in chunk)
        hi = float(np.nextafter(max(b.ts_max for b in chunk), np.inf))
        df = batches(directory, since=lo, until=hi, model=row["model_name"],
                     version=row["version"], blocks=[b.key for b in chunk], with_block=True,
                     feedback=False).read_all().to_pandas()
        table = None
        stats: dict[str, tuple[int, int, float, float, float, float]] = {}
        if len(df):
            df = derive(cfg, stores, ref, df, manifest, memo,
                        multivariate=bool(settings is not None and settings.multivariate))
            ev = _event_seconds(cfg, df)
            ts = df["ts"].astype("int64").to_numpy() / 1e9
            codes, keys = pd.factorize(df["block"])
            for i, key in enumerate(keys.tolist()):
                at = codes == i
                e = ev[at][np.isfinite(ev[at])]
                stats[key] = (int(at.sum()), int(at.sum() - len(e)), float(ts[at].min()),
                              float(ts[at].max()), float(e.min()) if len(e) else np.nan,
                              float(e.max()) if len(e) else np.nan)
            frame = df.drop(columns=["block"]).assign(**{"monitor.event": ev})
            table = pa.Table.from_pandas(frame, preserve_index=False)
        parts = [Part(b.key, *stats[b.key]) if b.key in stats
                 else Part(b.key, 0, 0, np.nan, np.nan, np.nan, np.nan) for b in chunk]
        out.update({p.key: p for p in cache.put(scope, parts, table)})
    return out


def block_parts(cfg: Any, root: Path, stores: Any, row: dict[str, Any], ref: Any,
                manifest: dict[str, Any], memo: dict[str, Any], *, since: float | None,
                until: float | None, by: str, settings: Any, cache: PartCache) -> list[Part]:
    """What the cache knows of each block of the range (of log time; every block for
    ``by="event"``), the blocks never read decoded and stored first: their rows of the
    version, and those rows' log-time and event-time ranges."""
    from cd4ml.predlog import block_index

    directory = cfg.serving.log.folder_in(root)
    scope = scope_of(cfg, row, settings)
    infos = block_index(directory) if by == "event" else block_index(directory, since, until)
    found: dict[str, Part] = {}
    _known(cache, scope, cfg, stores, ref, settings, manifest, memo, directory, row, infos,
           found)
    return [found[b.key] for b in infos]


def _known(cache: PartCache, scope: str, cfg: Any, stores: Any, ref: Any, settings: Any,
           manifest: dict[str, Any], memo: dict[str, Any], directory: Path,
           row: dict[str, Any], blocks: list[Any], found: dict[str, Part]) -> bool:
    """Every one of ``blocks`` into ``found``: from the cache, or decoded and stored now;
    whether any was decoded."""
    want = [b for b in blocks if b.key not in found]
    found.update(cache.get(scope, [b.key for b in want]))
    missing = [b for b in want if b.key not in found]
    if missing:
        found.update(_decode(cache, scope, cfg, stores, ref, settings, manifest, memo,
                             directory, row, missing))
    return bool(missing)


def window_frame(cfg: Any, root: Path, stores: Any, row: dict[str, Any], ref: Any,
                 manifest: dict[str, Any], memo: dict[str, Any], *, since: float | None,
                 until: float | None, last: int | None = None, by: str = "time",
                 settings: Any = None, cache: PartCache | None = None) -> pd.DataFrame:
    """The window's rows as ``read_window`` gives them (feedback joined; under
    ``by="event"`` the ``event_time`` column and the ``attrs`` it sets), with the
    :data:`~cd4ml.pipeline.monitor_log.DERIVED` columns and ``monitor.event``, from the
    cache (blocks not cached yet are decoded and stored first). ``settings``: the drift
    settings (with ``multivariate``, reconstruction errors are derived too).

    ``by="time"``: ``since <= ts < until``; ``by="event"``: the same bounds on event
    time; ``last``: only the latest N (by log time, or by event time under ``event``).
    """
    own = cache is None
    cache = cache if cache is not None else PartCache(cache_path(root))
    try:
        for _ in range(3):
            try:
                return _window(cache, cfg, root, stores, row, ref, manifest, memo,
                               since=since, until=until, last=last, by=by, settings=settings)
            except _Moved:
                continue
            finally:
                cache.forget()
        return _window(cache, cfg, root, stores, row, ref, manifest, memo, since=since,
                       until=until, last=last, by=by, settings=settings)
    finally:
        if own:
            cache.close()


def _window(cache: PartCache, cfg: Any, root: Path, stores: Any, row: dict[str, Any],
            ref: Any, manifest: dict[str, Any], memo: dict[str, Any], *,
            since: float | None, until: float | None, last: int | None, by: str,
            settings: Any) -> pd.DataFrame:
    from cd4ml.pipeline.event_time import event_source
    from cd4ml.predlog import block_index, join_feedback, segments

    if by not in ("time", "event"):
        raise ValueError(f"by == {by!r}, must be 'time' (log time) or 'event'")
    directory = cfg.serving.log.folder_in(root)
    scope = scope_of(cfg, row, settings)
    lo = -np.inf if since is None else since
    hi = np.inf if until is None else until
    infos = block_index(directory) if by == "event" else block_index(directory, since, until)
    found: dict[str, Part] = {}
    decoded = False

    def ensure(blocks: list[Any]) -> None:
        """Every one of ``blocks`` in ``found``: from the cache, or decoded now."""
        nonlocal decoded
        decoded |= _known(cache, scope, cfg, stores, ref, settings, manifest, memo,
                          directory, row, blocks, found)

    if last is not None and by == "time":  # the newest blocks until N rows are held
        newest = sorted(infos, key=lambda b: b.ts_max, reverse=True)
        i, step, held = 0, 64, 0
        while i < len(newest) and held < last:
            ensure(newest[i:i + step])
            held += sum(found[b.key].rows for b in newest[i:i + step])
            i, step = i + step, step * 2
        taken = [found[b.key] for b in newest[:i] if found[b.key].rows]
        floor = min((p.ts_min for p in taken), default=-np.inf) if held >= last else -np.inf
        infos = [b for b in infos if b.ts_max >= floor]
    ensure(infos)
    parts = [found[b.key] for b in infos]
    if by == "event":
        wanted = {p.part for p in parts if p.rows > p.no_event and p.ev_max >= lo
                  and p.ev_min < hi}
    else:
        wanted = {p.part for p in parts if p.rows and p.ts_max >= lo and p.ts_min < hi}
    wanted.discard(None)
    tables = cache.tables(wanted)  # type: ignore[arg-type]
    if decoded:  # upkeep, once the window's parts are read
        cache.prune({p.name for _, p in segments(directory)})
        cache.compact(scope)
    if not tables:
        return _empty(directory, row, by, cfg, sum(p.no_event for p in parts))
    df = _concat_tables(tables).to_pandas()
    t = (df["monitor.event"].to_numpy(np.float64) if by == "event"
         else df["ts"].astype("int64").to_numpy() / 1e9)
    df = df[(t >= lo) & (t < hi)]  # NaN (no event time) fails both
    if by == "event":
        df = df.assign(event_time=pd.to_datetime(df["monitor.event"], unit="s",
                                                 utc=True).astype(UTC_NS))
        order = ["event_time", "ts", "request_id", "row"]
    else:
        order = ["ts", "request_id", "row"]
    df = df.sort_values(order, kind="stable").reset_index(drop=True)
    if last is not None and len(df) > last:
        df = df.iloc[len(df) - last:].reset_index(drop=True)
    inputs = {c.removeprefix("input."): df[c].to_numpy(dtype=object)
              for c in df.columns if c.startswith("input.")}
    got = join_feedback(directory, df["request_id"].to_numpy(dtype=object),
                        df["row"].to_numpy(np.int64), inputs,
                        since=float(df["ts"].min().timestamp()) if len(df) else None)
    df["actual"], df["reward"] = got["actual"], got["reward"]
    df["feedback_ts"] = pd.to_datetime(got["feedback_ts"], unit="s", utc=True).astype(UTC_NS)
    if by == "event":
        df.attrs.update(event_time=event_source(cfg)[0],
                        without_event_time=sum(p.no_event for p in parts))
    return df


def _empty(directory: Path, row: dict[str, Any], by: str, cfg: Any,
           no_event: int) -> pd.DataFrame:
    """A window with no row: the log reader's empty frame (its fixed columns)."""
    from cd4ml.pipeline.event_time import event_source
    from cd4ml.predlog import batches

    df = batches(directory, since=0.0, until=0.0, model=row["model_name"],
                 version=row["version"]).read_all().to_pandas()
    if by == "event":
        df = df.assign(event_time=pd.Series([], dtype=UTC_NS))
        df.attrs.update(event_time=event_source(cfg)[0], without_event_time=no_event)
    return df
