"""Counting what a writer accepted but never flushed: a killed server's tail, or records
dropped while the disk failed. Each writer keeps its accepted count in a memory-mapped
file (``sessions/<pid>-<session>.cnt``, see the writer); the next writer to open the
folder compares the files of dead processes with what their sessions have on disk and
records the difference in ``state.db``."""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from cd4ml.predlog.segments import STATE, connect, read_only, segments

__all__ = ["recover_losses", "record_loss"]

log = logging.getLogger("cd4ml.predlog")


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
        try:
            with closing(read_only(path)) as con:
                (n,) = con.execute("SELECT coalesce(sum(n), 0) FROM blocks WHERE session = ?",
                                   (session,)).fetchone()
        except sqlite3.OperationalError:  # a segment being created right now
            continue
        except sqlite3.DatabaseError:  # damaged: set aside by the writer (damage.py)
            continue
        total += n
    return total


def record_loss(directory: Path, session: str, pid: int | None, accepted: int,
                 flushed: int, reason: str) -> dict[str, Any]:
    row = {"detected_at": time.time(), "session": session, "pid": pid,
           "accepted": accepted, "flushed": flushed, "lost": accepted - flushed,
           "reason": reason}
    with closing(connect(directory / "state.db", STATE)) as con:
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
        # native order: the count file is written and read on the same host
        accepted = struct.unpack_from("=Q", raw, 0)[0] if len(raw) >= 8 else 0
        flushed = _flushed(d, session)
        if accepted > flushed:
            row = record_loss(d, session, int(pid_s), accepted, flushed,
                               "the writer died before flushing (killed?)")
            found.append(row)
            log.warning("prediction log: %d record(s) of session %s (pid %s) were accepted "
                        "but never flushed", row["lost"], session, pid_s,
                        extra={"event": "prediction_log_loss", **row})
        claimed.unlink(missing_ok=True)
    return found
