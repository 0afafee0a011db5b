"""The writing side of the prediction log: ``append`` on the request path, commits on a
thread, and the count of what a crash lost."""

from __future__ import annotations

import json
import logging
import mmap
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from cd4ml.errors import ConfigError, LogFullError, UnavailableError
from cd4ml.predlog.blocks import LogRecord, Pending
from cd4ml.predlog.damage import set_aside, set_aside_damaged
from cd4ml.predlog.flushes import SegmentWriter
from cd4ml.predlog.losses import record_loss, recover_losses
from cd4ml.predlog.segments import (connect_segment, period_name, segment_path,
                                            sqlite_length_limit)

__all__ = ["PredictionLog"]

log = logging.getLogger("cd4ml.predlog")


def _check(key: str, value: Any, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigError(problem, key=f"serving.log.{key}", value=value)


class PredictionLog:
    """The writing side: ``append`` on the request path, commits on a thread.

    ``connect`` opens a segment for writing (default :func:`connect_segment`): the seam
    through which tests give the writer a slow or failing disk.
    """

    def __init__(self, directory: str | Path, *, flush_interval_ms: int = 200,
                 max_unflushed: int = 1_000, max_unflushed_bytes: int = 64 << 20,
                 max_block_bytes: int = 64 << 20, max_stored_body_bytes: int = 64 << 10,
                 when_full: str = "drop", rotate_hours: int = 24,
                 retention_days: float = 30, store_request: bool = True,
                 clock: Any = time.time,
                 connect: Callable[[Path], sqlite3.Connection] = connect_segment) -> None:
        limit = sqlite_length_limit()
        for key, value in (("max_unflushed", max_unflushed),
                           ("max_unflushed_bytes", max_unflushed_bytes),
                           ("max_block_bytes", max_block_bytes),
                           ("max_stored_body_bytes", max_stored_body_bytes)):
            _check(key, value, isinstance(value, int) and value >= 1, "must be at least 1")
        _check("max_block_bytes", max_block_bytes, max_block_bytes < limit,
               f"must be below SQLite's limit on a row of {limit:,} bytes "
               f"(SQLITE_LIMIT_LENGTH of this build)")
        _check("max_stored_body_bytes", max_stored_body_bytes,
               2 * max_stored_body_bytes <= max_block_bytes,
               f"must be at most half of serving.log.max_block_bytes ({max_block_bytes:,}), "
               f"so that any record fits in a block")
        _check("when_full", when_full, when_full in ("drop", "reject"),
               "expected 'drop' or 'reject'")
        self.dir = Path(directory)
        self.session = uuid.uuid4().hex[:16]
        self._writable()
        self.interval = flush_interval_ms / 1000
        self.max_unflushed, self.max_unflushed_bytes = max_unflushed, max_unflushed_bytes
        self.max_block_bytes, self.max_stored_body_bytes = max_block_bytes, max_stored_body_bytes
        self.when_full = when_full
        self.rotate_hours, self.retention_days = rotate_hours, retention_days
        self.store_request, self.clock = store_request, clock
        #: files of the folder SQLite could not read, renamed out of the way (damage.py)
        self.set_aside: list[dict[str, Any]] = set_aside_damaged(self.dir)
        self.recovered = recover_losses(self.dir)
        self._store = SegmentWriter(
            self.dir, self.session, rotate_hours=rotate_hours, retention_days=retention_days,
            store_request=store_request, max_block_bytes=max_block_bytes,
            max_stored_body_bytes=max_stored_body_bytes, clock=clock, connect=connect,
            on_damage=self.set_aside_file)
        self._store.sweep()
        self._cnt_path = self.dir / "sessions" / f"{os.getpid()}-{self.session}.cnt"
        with open(self._cnt_path, "wb") as f:
            f.write(b"\0" * 8)
        self._cnt_file = open(self._cnt_path, "r+b")  # noqa: SIM115 - held until close
        self._mm = mmap.mmap(self._cnt_file.fileno(), 8)
        #: the accepted count, which the next writer on this host reads after a crash
        #: (native ``Q``, see losses.py): a memoryview store, half of struct.pack_into
        self._count = memoryview(self._mm).cast("Q")
        #: the writer is woken once this many records (or bytes) wait. Smaller flushes
        #: hold the interpreter lock for less at a time (~5 µs a tabular record) but
        #: commit more often: waking at 128 records took the tabular server's p99 at c=8
        #: from 4.3 to 3.2 ms and the forecast log cost from 10.5 to 16.5 %, over its
        #: 12 % goal (11 paired runs each, 2026-12-02), so half of the bound it stays
        self._soft = max(1, max_unflushed // 2)
        self._soft_bytes = max(1, max_unflushed_bytes // 2)
        #: the records queued, and being written, a field at a time (Pending)
        self._buf = Pending()
        self._writing = Pending()
        #: bytes queued, and being written (a record's body, outputs and rows: append)
        self._buf_bytes = self._writing_bytes = 0
        #: the fast path of append takes a record while the queue is shorter than
        #: _fast_limit and the record is smaller than _fast_bytes (the bytes it may still
        #: queue, of the _given at the last _budget): until the writer must be woken or a
        #: bound checked; _buf_bytes is brought up to date by _settle
        self._fast_limit = self._fast_bytes = self._given = 0
        self._closed = False  # set by close(), once the count file is released
        #: a plain lock (the request path takes it once per record) under the condition
        #: the writer and flush() sleep on
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._seq = 0
        self.written = 0
        #: accepted records not stored: queue full, cannot be encoded or stored
        self.dropped = 0
        #: records refused with LogFullError (when_full: reject), never accepted
        self.rejected = 0
        self.write_errors = 0
        #: bodies stored truncated to max_stored_body_bytes
        self.truncated = 0
        self._last_full_log = 0.0
        self._closing = False
        self._budget()
        self._thread = threading.Thread(target=self._run, name="cd4ml-predlog", daemon=True)
        self._thread.start()

    def _writable(self) -> None:
        """Refuse, with the folder and the reason, a folder this process cannot write."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "sessions").mkdir(exist_ok=True)
            probe = self.dir / "sessions" / f".probe-{os.getpid()}-{self.session}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"the prediction log cannot write there ({exc.strerror}); give "
                              f"a folder this server may write, or serving.log.enabled: "
                              f"false", key="serving.log.dir", value=str(self.dir)) from None

    # -- request path ----------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Records accepted and not yet on disk (queued or being written)."""
        return len(self._buf) + len(self._writing)

    @property
    def queued_bytes(self) -> int:
        """Bytes (body, outputs, rows) of the records not yet on disk."""
        return self._buf_bytes + self._given - self._fast_bytes + self._writing_bytes

    def counts(self) -> dict[str, int]:
        """What ``/health`` and ``/metrics`` show: records written, dropped, rejected,
        write errors, bodies truncated, files set aside, records and bytes held."""
        return {"written": self.written, "dropped": self.dropped, "rejected": self.rejected,
                "write_errors": self.write_errors, "truncated_bodies": self.truncated,
                "set_aside": len(self.set_aside), "queue": self.queue_depth,
                "queued_bytes": self.queued_bytes}

    def _settle(self) -> None:
        """Under the lock: count in _buf_bytes what the fast path queued since _budget."""
        self._buf_bytes += self._given - self._fast_bytes
        self._given = self._fast_bytes

    def _budget(self) -> None:
        """Under the lock: how far the fast path of ``append`` may go from here."""
        self._settle()
        self._fast_limit = 0 if self._closing else min(
            self._soft - 1, self.max_unflushed - len(self._writing) - 1)
        self._fast_bytes = self._given = min(
            self._soft_bytes - self._buf_bytes,
            self.max_unflushed_bytes - self._buf_bytes - self._writing_bytes)

    def append(self, rec: LogRecord) -> bool:
        """Queue one record; never waits. False if it was dropped (counted): the log
        holds ``max_unflushed`` records or ``max_unflushed_bytes`` already, or is
        closing; with ``when_full="reject"`` a full log raises :class:`LogFullError`
        instead (HTTP 503 with Retry-After), and the record is not counted as accepted.

        The record is queued as it is (the writer encodes a flush's records a column at a
        time, see :func:`encode_block`, and indexes the request ids), so it must not be
        changed afterwards. Once half of either bound waits, the writer is woken.
        """
        # what the record holds, for the byte bound: its body, its outputs and row
        # numbers (8 + 8 bytes a row), inline features if any (computed here: a call
        # costs the request path ~0.1 µs)
        f = rec.features
        size = len(rec.request) + 16 * len(rec.outputs) + (
            0 if f is None else getattr(f, "nbytes", 0))
        lock = self._lock
        lock.acquire()  # the fast path below cannot raise; the rest runs under ``with``
        if len(self._buf) < self._fast_limit and size < self._fast_bytes:
            self._fast_bytes -= size
            self._seq = seq = self._seq + 1
            self._count[0] = seq
            self._buf.add(seq, rec)
            lock.release()
            return True
        lock.release()
        with self._lock:
            self._settle()
            held = len(self._buf) + len(self._writing)
            held_bytes = self._buf_bytes + self._writing_bytes
            if self._closing or held >= self.max_unflushed or (
                    held and held_bytes + size > self.max_unflushed_bytes):
                self._cond.notify_all()
                return self._full(rec, held, held_bytes)
            self._seq += 1
            self._count[0] = self._seq
            self._buf.add(self._seq, rec)
            self._buf_bytes += size
            if len(self._buf) >= self._soft or self._buf_bytes >= self._soft_bytes:
                self._cond.notify_all()
            self._budget()
            return True

    def _full(self, rec: LogRecord, held: int, held_bytes: int) -> bool:
        """Under the lock: a record the log has no room for, dropped or rejected."""
        why = ("closing" if self._closing else
               f"{held} records and {held_bytes:,} bytes wait for the disk (limits: "
               f"serving.log.max_unflushed {self.max_unflushed}, max_unflushed_bytes "
               f"{self.max_unflushed_bytes:,})")
        if self.when_full == "reject" and not self._closing:
            self.rejected += 1
            raise LogFullError(f"the prediction log cannot keep up: {why}; retry shortly "
                               f"(serving.log.when_full: reject)")
        self._seq += 1
        if not self._closed:  # after close the count file is gone: the drop is counted here
            self._count[0] = self._seq
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_full_log >= 1.0:  # one line a second, not one per request
            self._last_full_log = now
            log.error("prediction log: dropped record %s: %s (%d dropped so far)",
                      rec.request_id, why, self.dropped,
                      extra={"event": "prediction_log_drop", "dropped": self.dropped})
        return False

    # -- writer ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closing and len(self._buf) < self._soft and \
                        self._buf_bytes < self._soft_bytes:
                    self._cond.wait(self.interval)
                batch, self._buf = self._buf, Pending()
                self._writing = batch
                self._settle()
                self._writing_bytes, self._buf_bytes = self._buf_bytes, 0
                self._budget()
                closing_now = self._closing
            if len(batch):
                try:
                    self._write(batch)
                except Exception:  # noqa: BLE001 - never let the writer thread die
                    log.exception("prediction log: writing a flush failed")
                    self._drop(len(batch))
            with self._cond:
                self._writing = Pending()
                self._writing_bytes = 0
                self._budget()
                self._cond.notify_all()
                if closing_now and not len(self._buf):
                    return

    def _write(self, batch: Pending) -> None:
        got = self._store.write(batch)
        with self._lock:  # append counts its drops under the lock too
            self.written += got.written
            self.dropped += got.dropped
            self.truncated += got.truncated
            self.write_errors += got.errors

    def _drop(self, n: int) -> None:
        with self._lock:
            self.dropped += n

    def set_aside_file(self, path: Path, problem: str) -> None:
        """Rename a damaged segment out of the way (damage.py), and count it."""
        row = set_aside(self.dir, Path(path), problem)
        if row is not None:
            self.set_aside.append(row)

    # -- control ---------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Commit what is queued now; True once it is on disk (or counted as dropped)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._cond.notify_all()

            def pending() -> bool:
                return bool((len(self._buf) and self._buf.seqs[0] <= target) or
                            (len(self._writing) and self._writing.seqs[0] <= target))

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
            self._budget()
            self._cond.notify_all()
        self._thread.join(timeout=60)
        self._store.close()
        if self._seq > self.written:
            record_loss(self.dir, self.session, os.getpid(), self._seq, self.written,
                        "dropped while serving")
        with self._lock:
            self._closed = True
            self._count.release()
        self._mm.close()
        self._cnt_file.close()
        self._cnt_path.unlink(missing_ok=True)

    def add_feedback(self, items: Iterable[dict[str, Any]]) -> int:
        """Store validated feedback (``request_id``/``row`` or ``keys``; actual, reward),
        committed before this returns, in the segment of the current period; a disk
        that refuses it gives :class:`UnavailableError` (503), nothing half stored."""
        now = self.clock()
        rows = [(now, it.get("request_id"), it.get("row"),
                 json.dumps(it["keys"], default=str) if it.get("keys") is not None else None,
                 it.get("actual"), it.get("reward")) for it in items]
        path = segment_path(self.dir, period_name(now, self.rotate_hours), os.getpid())
        try:
            with closing(self._store.open(path)) as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)", rows)
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            raise UnavailableError(f"feedback could not be stored in the prediction log "
                                   f"({exc}); retry later") from None
        return len(rows)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
