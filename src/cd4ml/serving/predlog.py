"""The prediction log: every prediction, with what the model saw, durable and queryable.

A server appends one record per answered request (request id, time, model name and
version, rollout arm, endpoint, latency, the body as received, the validated input
fields, the feature matrix the model saw and its outputs). :meth:`PredictionLog.append`
only puts the record in a list; a writer thread commits the list to SQLite every
``flush_interval_ms`` (one transaction, fsynced). A request that finds
``max_unflushed`` records waiting blocks until the writer has caught up, which bounds
what a ``kill -9`` can lose.

Losses are counted, never silent. Each writer keeps the number of records it accepted
in a small memory-mapped file (``sessions/<pid>-<session>.cnt``); the kernel keeps
those bytes when the process is killed. The next writer to open the folder finds the
files of dead processes and records ``accepted - flushed`` in ``state.db``, which
:func:`status` reports (and ``cd4ml log status`` prints).

Layout of the folder (``serving.log.dir``)::

    seg-20261123T00.db        one SQLite segment per ``rotate_hours`` period (UTC)
    state.db                  losses found after a crash or a failing disk
    sessions/                 the accepted-record counters of live writers

Segments older than ``retention_days`` are deleted whole (no VACUUM). A segment has two
indexes, time and request id, because every index costs every insert; a query by model
version filters the rows of its time window. Several worker
processes write the same segment; SQLite's locking serialises their commits.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import re
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from cd4ml.errors import RequestError

__all__ = ["PredictionLog", "LogRecord", "segments", "query", "predictions", "status",
           "find_request", "export_parquet", "parse_time", "recover_losses"]

log = logging.getLogger("cd4ml.predlog")

_SEG = re.compile(r"^seg-(\d{8}T\d{2})\.db$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    session TEXT NOT NULL, seq INTEGER NOT NULL, request_id TEXT NOT NULL, ts REAL NOT NULL,
    model TEXT NOT NULL, version INTEGER, arm TEXT, endpoint TEXT, latency_ms REAL,
    n_rows INTEGER NOT NULL, content_type TEXT, request BLOB, inputs BLOB NOT NULL,
    n_features INTEGER NOT NULL, features BLOB NOT NULL, outputs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id);
CREATE TABLE IF NOT EXISTS feature_names (
    model TEXT NOT NULL, version INTEGER NOT NULL, names TEXT NOT NULL,
    PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS feedback (
    ts REAL NOT NULL, request_id TEXT, row INTEGER, keys TEXT, actual REAL, reward REAL);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
"""
_STATE = """
CREATE TABLE IF NOT EXISTS losses (
    detected_at REAL NOT NULL, session TEXT NOT NULL, pid INTEGER, accepted INTEGER NOT NULL,
    flushed INTEGER NOT NULL, lost INTEGER NOT NULL, reason TEXT NOT NULL);
"""


class LogRecord(NamedTuple):
    """One answered request, as the server hands it to the log (a tuple: cheap to make)."""

    request_id: str
    ts: float
    model: str
    version: int | None
    endpoint: str
    latency_ms: float
    records: Sequence[Any]
    features: Any  # float32 array, n_rows x n_features
    feature_names: Sequence[str]
    outputs: Any  # float64 array, n_rows
    content_type: str = ""
    request: bytes = b""
    arm: str = "main"


try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=str).encode()


def _columns(raw: str | bytes) -> dict[str, list[Any]]:
    """The logged request rows as columns, field names in lower case."""
    recs = json.loads(raw)
    cols: dict[str, list[Any]] = {}
    for i, rec in enumerate(recs):
        for k, v in rec.items():
            cols.setdefault(str(k).lower(), [None] * i).append(v)
        for col in cols.values():
            if len(col) < i + 1:
                col.append(None)
    return cols


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages stay cached
    con.executescript(schema)
    return con


def _period_name(ts: float, hours: int) -> str:
    start = int(ts // (hours * 3600)) * hours * 3600
    return datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%dT%H")


def _period_start(name: str) -> float:
    return datetime.strptime(name, "%Y%m%dT%H").replace(tzinfo=timezone.utc).timestamp()


def segments(directory: str | Path) -> list[tuple[float, Path]]:
    """(period start, path) of every segment, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _SEG.match(p.name)
        if m:
            out.append((_period_start(m.group(1)), p))
    return sorted(out)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flushed(directory: Path, session: str) -> int:
    """How many of a session's records are on disk (a count: a dropped record leaves a gap
    in the sequence numbers, so the highest one would hide it)."""
    total = 0
    for _, path in segments(directory):
        with closing(sqlite3.connect(path, timeout=30)) as con:
            try:
                (n,) = con.execute("SELECT count(*) FROM predictions WHERE session = ?",
                                   (session,)).fetchone()
            except sqlite3.OperationalError:  # a segment being created right now
                continue
            total += n
    return total


def _record_loss(directory: Path, session: str, pid: int | None, accepted: int,
                 flushed: int, reason: str) -> dict[str, Any]:
    row = {"detected_at": time.time(), "session": session, "pid": pid,
           "accepted": accepted, "flushed": flushed, "lost": accepted - flushed,
           "reason": reason}
    with closing(_connect(directory / "state.db", _STATE)) as con:
        con.execute("INSERT INTO losses VALUES (:detected_at, :session, :pid, :accepted, "
                    ":flushed, :lost, :reason)", row)
    return row


def recover_losses(directory: str | Path) -> list[dict[str, Any]]:
    """Count what writers that died without closing accepted but never flushed."""
    d = Path(directory)
    found: list[dict[str, Any]] = []
    sess_dir = d / "sessions"
    if not sess_dir.is_dir():
        return found
    for f in sorted(sess_dir.glob("*.cnt")):
        pid_s, _, session = f.stem.partition("-")
        if not pid_s.isdigit() or _pid_alive(int(pid_s)):
            continue
        claimed = f.with_name(f"{f.name}.claim{os.getpid()}")
        try:
            os.rename(f, claimed)  # one process claims each dead session
        except FileNotFoundError:
            continue
        raw = claimed.read_bytes()
        accepted = struct.unpack_from("<Q", raw, 0)[0] if len(raw) >= 8 else 0
        flushed = _flushed(d, session)
        if accepted > flushed:
            row = _record_loss(d, session, int(pid_s), accepted, flushed,
                               "the writer died before flushing (killed?)")
            found.append(row)
            log.warning("prediction log: %d record(s) of session %s (pid %s) were accepted "
                        "but never flushed", row["lost"], session, pid_s,
                        extra={"event": "prediction_log_loss", **row})
        claimed.unlink(missing_ok=True)
    return found


class PredictionLog:
    """The writing side: ``append`` on the request path, commits on a thread."""

    def __init__(self, directory: str | Path, *, flush_interval_ms: int = 200,
                 max_unflushed: int = 1_000, rotate_hours: int = 24,
                 retention_days: float = 30, store_request: bool = True,
                 clock: Any = time.time) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "sessions").mkdir(exist_ok=True)
        self.interval = flush_interval_ms / 1000
        self.max_unflushed = max_unflushed
        self.rotate_hours, self.retention_days = rotate_hours, retention_days
        self.store_request, self.clock = store_request, clock
        self.session = uuid.uuid4().hex[:16]
        self.recovered = recover_losses(self.dir)
        self._sweep()
        self._cnt_path = self.dir / "sessions" / f"{os.getpid()}-{self.session}.cnt"
        with open(self._cnt_path, "wb") as f:
            f.write(b"\0" * 8)
        self._cnt_file = open(self._cnt_path, "r+b")  # noqa: SIM115 - held until close
        self._mm = mmap.mmap(self._cnt_file.fileno(), 8)
        self._buf: list[tuple[int, tuple[Any, ...], tuple[str, int | None]]] = []
        self._writing: list[tuple[int, tuple[Any, ...], tuple[str, int | None]]] = []
        self._names: dict[tuple[str, int | None], str] = {}
        self._cond = threading.Condition()
        self._seq = 0
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self._closing = False
        self._con: sqlite3.Connection | None = None
        self._con_period = ""
        self._names_written: set[tuple[str, int | None, str]] = set()
        self._thread = threading.Thread(target=self._run, name="cd4ml-predlog", daemon=True)
        self._thread.start()

    # -- request path ----------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._buf)

    def append(self, rec: LogRecord) -> bool:
        """Queue one record; False if it had to be dropped (the writer is failing).

        The row is encoded here, a few microseconds spread over the requests, so that the
        writer thread only hands finished rows to SQLite (which releases the GIL) instead
        of holding the GIL for a whole batch's encoding, which showed in tail latency.
        """
        nk = (rec.model, rec.version)
        if nk not in self._names:
            self._names[nk] = json.dumps(list(rec.feature_names))
        tail = (rec.request_id, rec.ts, rec.model, rec.version, rec.arm, rec.endpoint,
                rec.latency_ms, len(rec.outputs), rec.content_type,
                rec.request if self.store_request else None, _dumps(rec.records),
                len(rec.feature_names), rec.features.tobytes(), rec.outputs.tobytes())
        with self._cond:
            if len(self._buf) >= self.max_unflushed:
                self._cond.notify_all()
                deadline = time.monotonic() + max(5 * self.interval, 1.0)
                while len(self._buf) >= self.max_unflushed and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            self._seq += 1
            struct.pack_into("<Q", self._mm, 0, self._seq)
            if len(self._buf) >= self.max_unflushed or self._closing:
                self.dropped += 1
                log.error("prediction log: dropped record %s (queue full, writer failing)",
                          rec.request_id, extra={"event": "prediction_log_drop"})
                return False
            self._buf.append((self._seq, (self.session, self._seq, *tail), nk))
            return True

    # -- writer ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closing and len(self._buf) < self.max_unflushed:
                    self._cond.wait(self.interval)
                batch, self._buf = self._buf, []
                self._writing = batch
                closing_now = self._closing
            if batch:
                self._write(batch)
            with self._cond:
                self._writing = []
                self._cond.notify_all()
                if closing_now and not self._buf:
                    return

    def _write(self, batch: list[tuple[int, tuple[Any, ...], tuple[str, int | None]]]) -> None:
        try:
            now = self.clock()
            con = self._segment(now)
            names = [(m, v, self._names[(m, v)]) for m, v in {nk for _, _, nk in batch}
                     if (m, v, self._con_period) not in self._names_written]
            rows = [row for _, row, _ in batch]
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR IGNORE INTO feature_names VALUES (?, ?, ?)", names)
                con.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                                "?, ?, ?, ?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._names_written.update((m, v, self._con_period) for m, v, _ in names)
            self.written += len(batch)
        except Exception as exc:  # disk full, folder removed...: keep what fits, count
            self.write_errors += 1
            self._names_written.clear()
            self._con = None
            log.error("prediction log: writing %d record(s) failed: %s", len(batch), exc,
                      extra={"event": "prediction_log_error"})
            with self._cond:
                room = self.max_unflushed - len(self._buf)
                keep = batch[:max(room, 0)]
                self.dropped += len(batch) - len(keep)
                self._buf[:0] = keep
            time.sleep(self.interval)

    def _segment(self, now: float) -> sqlite3.Connection:
        period = _period_name(now, self.rotate_hours)
        if self._con is None or period != self._con_period:
            if self._con is not None:
                self._con.close()
            self._con = _connect(self.dir / f"seg-{period}.db", _SCHEMA)
            self._con_period = period
            self._sweep()
        return self._con

    def _sweep(self) -> None:
        """Delete whole segments older than the retention."""
        cutoff = self.clock() - self.retention_days * 86400
        for start, path in segments(self.dir):
            if start + self.rotate_hours * 3600 <= cutoff:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                log.info("prediction log: deleted segment %s (older than %s days)",
                         path.name, self.retention_days)

    # -- control ---------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Commit what is queued now; True once it is on disk (or counted as dropped)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._cond.notify_all()

            def pending() -> bool:
                return bool((self._buf and self._buf[0][0] <= target) or
                            (self._writing and self._writing[0][0] <= target))

            while pending():
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, self.interval))
                self._cond.notify_all()
        return True

    def close(self) -> None:
        """Flush everything, stop the writer, and record any drop as a loss."""
        if self._closing:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=60)
        if self._con is not None:
            self._con.close()
        if self._seq > self.written:
            _record_loss(self.dir, self.session, os.getpid(), self._seq, self.written,
                         "dropped while serving")
        self._mm.close()
        self._cnt_file.close()
        self._cnt_path.unlink(missing_ok=True)

    def add_feedback(self, items: Iterable[dict[str, Any]]) -> int:
        """Store validated feedback (``request_id``/``row`` or ``keys``; actual, reward),
        committed before this returns, in the segment of the current period."""
        now = self.clock()
        rows = [(now, it.get("request_id"), it.get("row"),
                 json.dumps(it["keys"], default=str) if it.get("keys") is not None else None,
                 it.get("actual"), it.get("reward")) for it in items]
        path = self.dir / f"seg-{_period_name(now, self.rotate_hours)}.db"
        with closing(_connect(path, _SCHEMA)) as con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
        return len(rows)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- reading ---------------------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str | None, *, now: float | None = None) -> float | None:
    """Epoch seconds from an ISO date/time (UTC unless it says) or an age like ``2h``.

    >>> parse_time("2026-01-02T03:00:00Z")
    1767322800.0
    >>> parse_time("90m", now=10_000.0)
    4600.0
    """
    if text is None or text == "":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"time {text!r}: expected an ISO date/time (2026-11-23T10:00) or "
                           f"an age such as 30m, 2h, 7d") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _in_window(directory: Path, since: float | None, until: float | None) -> Iterator[Path]:
    segs = segments(directory)
    for i, (start, path) in enumerate(segs):
        end = segs[i + 1][0] if i + 1 < len(segs) else float("inf")
        if until is not None and start > until:
            continue
        if since is not None and end <= since:
            continue
        yield path


def _where(since: float | None, until: float | None, model: str | None,
           version: int | None, request_id: str | None) -> tuple[str, list[Any]]:
    conds, args = [], []
    for cond, val in (("ts >= ?", since), ("ts < ?", until), ("model = ?", model),
                      ("version = ?", version), ("request_id = ?", request_id)):
        if val is not None:
            conds.append(cond)
            args.append(val)
    return (" WHERE " + " AND ".join(conds)) if conds else "", args


def _rows(directory: Path, sql: str, args: list[Any], since: float | None,
          until: float | None) -> Iterator[tuple[Path, sqlite3.Row]]:
    for path in _in_window(directory, since, until):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
            con.row_factory = sqlite3.Row
            try:
                cur = con.execute(sql, args)
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    continue
                raise
            for row in cur:
                yield path, row


def query(directory: str | Path, *, since: float | None = None, until: float | None = None,
          model: str | None = None, version: int | None = None,
          request_id: str | None = None, limit: int | None = None,
          newest_first: bool = False) -> list[dict[str, Any]]:
    """One dict per logged request in the window (without the feature and output bytes)."""
    where, args = _where(since, until, model, version, request_id)
    sql = ("SELECT request_id, ts, model, version, arm, endpoint, latency_ms, n_rows, "
           f"content_type, inputs, outputs FROM predictions{where} ORDER BY ts")
    import numpy as np

    out = []
    for _, r in _rows(Path(directory), sql, args, since, until):
        d = dict(r)
        d["inputs"] = _columns(d["inputs"])
        d["outputs"] = np.frombuffer(d["outputs"], dtype="<f8").tolist()
        out.append(d)
    out.sort(key=lambda d: d["ts"], reverse=newest_first)
    return out[:limit] if limit is not None else out


def predictions(directory: str | Path, *, since: float | None = None,
                until: float | None = None, model: str | None = None,
                version: int | None = None, with_request: bool = False,
                with_features: bool = True) -> Any:
    """One row per prediction as a DataFrame: request fields, features, output, actuals.

    Feature columns are ``feature.<name>``; versions with other features leave them
    null. ``actual``/``reward`` come from feedback, by request id (and row) or by the
    request fields (series keys and date); the latest feedback wins.
    """
    import numpy as np
    import pandas as pd

    directory = Path(directory)
    where, args = _where(since, until, model, version, None)
    sql = f"SELECT * FROM predictions{where} ORDER BY ts"
    names: dict[tuple[str, int | None], list[str]] = {}
    frames = []
    for path, r in _rows(directory, sql, args, since, until):
        key = (r["model"], r["version"])
        if key not in names:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                row = con.execute("SELECT names FROM feature_names WHERE model = ? AND "
                                  "version IS ?", key).fetchone()
            names[key] = json.loads(row[0]) if row else [
                f"f{i}" for i in range(r["n_features"])]
        n = r["n_rows"]
        cols: dict[str, Any] = {
            "request_id": [r["request_id"]] * n, "row": np.arange(n),
            "ts": [r["ts"]] * n, "model": [r["model"]] * n, "version": [r["version"]] * n,
            "arm": [r["arm"]] * n, "endpoint": [r["endpoint"]] * n,
            "latency_ms": [r["latency_ms"]] * n}
        for f, vals in _columns(r["inputs"]).items():
            cols[f] = vals
        cols["prediction"] = np.frombuffer(r["outputs"], dtype="<f8")
        if with_features:
            feats = np.frombuffer(r["features"], dtype="<f4").reshape(n, r["n_features"])
            for j, name in enumerate(names[key]):
                cols[f"feature.{name}"] = feats[:, j]
        if with_request:
            body = r["request"]
            cols["request"] = [None if body is None else bytes(body)] * n
            cols["content_type"] = [r["content_type"]] * n
        frames.append(pd.DataFrame(cols))
    if not frames:
        return pd.DataFrame(columns=["request_id", "row", "ts", "model", "version", "arm",
                                     "endpoint", "latency_ms", "prediction", "actual",
                                     "reward"])
    df = pd.concat(frames, ignore_index=True)
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return _join_feedback(directory, df)


def _feedback(directory: Path) -> list[dict[str, Any]]:
    out = []
    for _, r in _rows(directory, "SELECT * FROM feedback ORDER BY ts", [], None, None):
        out.append(dict(r))
    return out


def _join_feedback(directory: Path, df: Any) -> Any:
    """Latest non-null ``actual`` and ``reward`` per prediction; by id wins over by keys."""
    import pandas as pd

    fb = _feedback(directory)
    df["actual"] = float("nan")
    df["reward"] = float("nan")
    if not fb:
        return df
    fbd = pd.DataFrame(fb).sort_values("ts", kind="stable")
    by_id = fbd[fbd["request_id"].notna()]
    by_key = fbd[fbd["request_id"].isna() & fbd["keys"].notna()]
    for c in ("actual", "reward"):
        ids = by_id[by_id[c].notna()].drop_duplicates(["request_id", "row"], keep="last")
        if len(ids):
            m = df[["request_id", "row"]].merge(ids[["request_id", "row", c]],
                                                on=["request_id", "row"], how="left")
            df[c] = m[c].to_numpy()
        keyed = by_key[by_key[c].notna()]
        if len(keyed):
            keys = pd.DataFrame([json.loads(k) for k in keyed["keys"]])
            on = list(keys.columns)
            if all(k in df.columns for k in on):
                keys[f"{c}_k"] = keyed[c].to_numpy()
                keys = keys.astype({k: str for k in on}).drop_duplicates(on, keep="last")
                m = df[on].astype(str).merge(keys, on=on, how="left")
                df[c] = df[c].combine_first(pd.Series(m[f"{c}_k"].to_numpy(), index=df.index))
    return df


def export_parquet(directory: str | Path, output: str | Path, **filters: Any) -> int:
    """Write :func:`predictions` to Parquet (atomically); returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(output)
    if out.suffix != ".parquet":
        raise RequestError(f"--output {str(out)!r}: expected a file ending in .parquet")
    df = predictions(directory, **filters)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(df)


def find_request(directory: str | Path, request_id: str) -> dict[str, Any] | None:
    """The newest logged request with this id: its n_rows, model, version, inputs."""
    for path in reversed([p for _, p in segments(directory)]):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
            try:
                r = con.execute("SELECT n_rows, model, version, inputs, ts FROM predictions "
                                "WHERE request_id = ? ORDER BY ts DESC LIMIT 1",
                                (request_id,)).fetchone()
            except sqlite3.OperationalError:
                continue
        if r:
            return {"n_rows": r[0], "model": r[1], "version": r[2],
                    "inputs": _columns(r[3]), "ts": r[4]}
    return None


def status(directory: str | Path) -> dict[str, Any]:
    """Segments (period, records, predictions, feedback, bytes, time range) and losses."""
    d = Path(directory)
    segs = []
    for start, path in segments(d):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
            try:
                n, rows, t0, t1 = con.execute(
                    "SELECT count(*), coalesce(sum(n_rows), 0), min(ts), max(ts) "
                    "FROM predictions").fetchone()
                (fb,) = con.execute("SELECT count(*) FROM feedback").fetchone()
            except sqlite3.OperationalError:
                n = rows = fb = 0
                t0 = t1 = None
        size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
                   if Path(f"{path}{s}").exists())
        segs.append({"segment": path.name, "period_start": start, "requests": n,
                     "predictions": rows, "feedback": fb, "bytes": size,
                     "first": t0, "last": t1})
    losses: list[dict[str, Any]] = []
    if (d / "state.db").exists():
        with closing(sqlite3.connect(d / "state.db", timeout=30)) as con:
            con.row_factory = sqlite3.Row
            try:
                losses = [dict(r) for r in con.execute(
                    "SELECT * FROM losses ORDER BY detected_at")]
            except sqlite3.OperationalError:
                losses = []
    live = sorted(p.name for p in (d / "sessions").glob("*.cnt")) if (d / "sessions").is_dir() \
        else []
    return {"dir": str(d), "segments": segs, "losses": losses,
            "lost_total": sum(x["lost"] for x in losses), "live_writers": live}
