"""The project lock: one holder at a time, a readable error naming the holder."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cd4ml.errors import LockedError
from cd4ml.store import lock_holder, project_lock


import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)


def _start_holder(path: Path, hold_s: float) -> Any:
    """A forked process holding the lock at ``path`` for ``hold_s`` seconds."""
    ctx = fx.fork_context()
    locked = ctx.Event()
    proc = ctx.Process(target=fx.lock_worker, args=(str(path), hold_s, locked))
    proc.start()
    assert locked.wait(10), "the holder did not get the lock"
    return proc


def test_second_holder_in_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".cd4ml" / "run.lock"
    with project_lock(path) as held:
        assert held == path
        assert lock_holder(path)["pid"] == os.getpid()
        with pytest.raises(LockedError) as err:
            with project_lock(path):
                pass
        msg = str(err.value)
        assert msg.startswith(f"another cd4ml run holds the project lock {path} "
                              f"(pid {os.getpid()}, started ")
        assert msg.endswith("wait for it to finish or retry with a timeout")
        assert "\n" not in msg
    assert lock_holder(path) is None
    with project_lock(path):  # free again
        pass


def test_other_process_holds_then_releases(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    proc = _start_holder(path, 0.6)
    try:
        with pytest.raises(LockedError, match=f"project lock {path} \\(pid {proc.pid}, "):
            with project_lock(path):
                pass
        with pytest.raises(LockedError, match="waited 0.1 s"):
            with project_lock(path, timeout_s=0.1):
                pass
        start = time.monotonic()
        with project_lock(path, timeout_s=15):
            assert time.monotonic() - start > 0.2  # it waited for the holder
            assert lock_holder(path)["pid"] == os.getpid()
    finally:
        proc.kill()
        proc.join()


def test_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    proc = _start_holder(path, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    with project_lock(path, timeout_s=5):
        assert lock_holder(path)["pid"] == os.getpid()


def test_waiting_thread_gets_the_lock_after_release(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    got: list[int] = []

    def wait() -> None:
        with project_lock(path, timeout_s=10):
            got.append(lock_holder(path)["pid"])

    with project_lock(path):
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)
        assert not got
    waiter.join(10)
    assert got == [os.getpid()]


def test_negative_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout_s == -1, must be >= 0"):
        with project_lock(tmp_path / "l", timeout_s=-1):
            pass
