"""Corrupt or foreign files in the log's folder: found, set aside, listed.

A segment that SQLite cannot read ("file is not a database", "database disk image is
malformed": a file overwritten, truncated, or not ours under a segment's name) would
stop every reader and the writer at startup. A writer opening the folder checks each
segment (opening it and reading its schema: SQLite sees a truncated file there, from
the size its header records) and renames a bad one to ``<name>.corrupt-<time>`` with
its ``-wal`` and ``-shm``, so that nothing is deleted and SQLite can still open the
renamed file for a look. Each move is recorded in ``state.db`` and listed by
:func:`cd4ml.predlog.status` and ``cd4ml log status``. Readers skip a segment
they find damaged later, with a warning.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from cd4ml.predlog.segments import STATE, connect, read_only, segments

__all__ = ["is_damage", "segment_problem", "set_aside", "set_aside_damaged", "set_aside_files"]

log = logging.getLogger("cd4ml.predlog")

_MARK = ".corrupt-"


def is_damage(exc: BaseException) -> bool:
    """Whether a sqlite3 error says the file is damaged or not a database (not a lock,
    a full disk or a missing table, which are ``OperationalError``)."""
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.OperationalError):
        return False
    name = getattr(exc, "sqlite_errorname", None) or ""
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or (
        not name and type(exc) is sqlite3.DatabaseError)


def segment_problem(path: Path) -> str | None:
    """Why SQLite cannot read this file as a database (None if it can)."""
    try:
        with closing(read_only(path)) as con:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
    return None


def set_aside(directory: Path, path: Path, problem: str) -> dict[str, Any] | None:
    """Rename a damaged file (and its -wal/-shm) out of the log's way; None if another
    process moved it first. Recorded in ``state.db`` and logged."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved = path.with_name(f"{path.name}{_MARK}{stamp}-p{os.getpid()}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return None
    for suffix in ("-wal", "-shm"):
        try:
            os.rename(f"{path}{suffix}", f"{moved}{suffix}")
        except FileNotFoundError:
            pass
    row = {"at": time.time(), "file": path.name, "moved_to": moved.name, "problem": problem}
    log.error("prediction log: %s cannot be read (%s); set aside as %s", path.name, problem,
              moved.name, extra={"event": "prediction_log_set_aside", **row})
    if path.name != "state.db":
        try:
            with closing(connect(directory / "state.db", STATE)) as con:
                con.execute("INSERT INTO set_aside VALUES (:at, :file, :moved_to, :problem)",
                            row)
        except sqlite3.Error as exc:  # the move is what matters; the log line says it
            log.error("prediction log: could not record the set-aside file in state.db: %s",
                      exc)
    return row


def set_aside_damaged(directory: Path) -> list[dict[str, Any]]:
    """Set aside ``state.db`` and every segment of the folder that SQLite cannot read."""
    out = []
    state = directory / "state.db"
    for path in [*([state] if state.exists() else []), *(p for _, p in segments(directory))]:
        problem = segment_problem(path)
        row = set_aside(directory, path, problem) if problem else None
        if row is not None:
            out.append(row)
    return out


def set_aside_files(directory: Path) -> list[dict[str, Any]]:
    """The files set aside in the folder (with the problem recorded for each, if any)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    reasons: dict[str, dict[str, Any]] = {}
    if (d / "state.db").exists():
        try:
            with closing(read_only(d / "state.db")) as con:
                con.row_factory = sqlite3.Row
                reasons = {r["moved_to"]: dict(r) for r in con.execute(
                    "SELECT * FROM set_aside")}
        except sqlite3.Error:
            reasons = {}
    out = []
    for p in sorted(d.iterdir()):
        if _MARK in p.name and not p.name.endswith(("-wal", "-shm")):
            r = reasons.get(p.name, {})
            out.append({"file": p.name, "original": p.name.split(_MARK)[0],
                        "bytes": p.stat().st_size, "at": r.get("at"),
                        "problem": r.get("problem")})
    return out
