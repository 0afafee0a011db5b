"""The project lock: one cd4ml run at a time per project folder.

The lock is an OS file lock (released by the OS when its process dies, even on
SIGKILL); a sidecar file ``<lock>.info`` records who holds it so the error can say so.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run.lock"
>>> with project_lock(path):
...     try:
...         with project_lock(path):
...             pass
...     except LockedError as e:
...         print(str(e).split(" (pid")[0] == f"another cd4ml run holds the project lock {path}")
True
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cd4ml.errors import LockedError

__all__ = ["project_lock", "lock_holder"]


def _info_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".info")


def lock_holder(lock_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the sidecar says about the holder (``pid``, ``started_at``, ``host``), if any."""
    try:
        info = json.loads(_info_path(Path(lock_path)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _write_info(lock_path: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    target = _info_path(lock_path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, target)


@contextlib.contextmanager
def project_lock(lock_path: str | os.PathLike[str], timeout_s: float = 0.0) -> Iterator[Path]:
    """Hold the project lock at ``lock_path`` for the ``with`` block; yields its path.

    If another process (or another holder in this one) has it, wait up to ``timeout_s``
    seconds, then raise :class:`LockedError` naming the lock, the holder's pid and start.
    """
    if timeout_s < 0:
        raise ValueError(f"timeout_s == {timeout_s}, must be >= 0")
    path = Path(lock_path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    try:
        if timeout_s > 0:
            lock.acquire(timeout=timeout_s)
        else:
            lock.acquire(blocking=False)
    except Timeout:
        holder = lock_holder(path) or {}
        who = f"pid {holder.get('pid', 'unknown')}, started {holder.get('started_at', '?')}"
        if holder.get("host") not in (None, socket.gethostname()):
            who += f" on {holder['host']}"
        advice = ("wait for it to finish or retry with a timeout" if timeout_s == 0 else
                  f"waited {timeout_s:g} s; wait for it to finish or retry with a longer "
                  f"timeout (store.lock_timeout_s)")
        raise LockedError(f"another cd4ml run holds the project lock {path} ({who}); "
                          f"{advice}") from None
    try:
        _write_info(path)
        yield path
    finally:
        with contextlib.suppress(OSError):
            _info_path(path).unlink()
        lock.release()
