"""Start a server in its own process group, wait until it answers and settles, stop it.

Readiness: the first of the given URLs that answers 200 (a 404 moves on to the next, so
cd4ml's ``/ready`` is used where it exists and ``/health`` otherwise). With several
workers the first answer can come before every worker has loaded its model, so after
that we also wait until the whole process group is idle (its CPU time stops growing).
Every server started here is killed (its process group: SIGTERM, then SIGKILL) by
``stop_all``, which the benchmark calls from ``finally`` and on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Server", "free_port", "start", "stop", "stop_all", "http_json",
           "group_cpu", "cpu_delta"]

_LIVE: list[Server] = []
_CLK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    cmd: list[str]
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    ready_s: float | None = None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, body: bytes | None = None, timeout: float = 30,
              content_type: str = "application/json") -> tuple[int, Any]:
    """GET (or POST ``body``) and return (status, parsed JSON or text)."""
    import json

    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def start(name: str, cmd: list[str], url: str, log_dir: Path, *,
          env: dict[str, str] | None = None, cpus: str | None = None) -> Server:
    """Start ``cmd`` in a new session (process group) with output to a log file."""
    log_path = log_dir / f"{name.replace(' ', '_').replace('/', '_')}.log"
    full = ["taskset", "-c", cpus, *cmd] if cpus is not None else cmd
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    srv = Server(name, full, url, log_path, proc)
    _LIVE.append(srv)
    return srv


def wait_ready(srv: Server, paths: list[str], timeout_s: float = 300) -> None:
    """Poll until one of ``paths`` answers 200; raise with the log tail if it dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise ServerExited(srv)
        for p in paths:
            try:
                with urllib.request.urlopen(srv.url + p, timeout=2) as resp:
                    if resp.status == 200:
                        srv.ready_s = time.monotonic() - srv.started
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    continue  # this server has no such endpoint: try the next one
                break  # e.g. 503 from /ready while loading: not ready yet
            except (urllib.error.URLError, OSError):
                break
        time.sleep(0.25)
    raise TimeoutError(f"{srv.name} not ready after {timeout_s:.0f}s; log:\n{srv.log_tail()}")


class ServerExited(RuntimeError):
    def __init__(self, srv: Server) -> None:
        self.server = srv
        super().__init__(f"{srv.name} exited with code {srv.proc.returncode} before it was "
                         f"ready: {' '.join(srv.cmd)}\n{srv.log_tail()}")


def _group_stats(pgid: int) -> dict[int, list[str]]:
    """The /proc/PID/stat fields (after the name) of each process in the group."""
    out: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(parts[2]) == pgid:  # field 5: pgrp
            out[int(d)] = parts
    return out


def group_cpu(pgid: int) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process in the group."""
    return {pid: (int(p[11]) + int(p[12])) / _CLK  # utime + stime
            for pid, p in _group_stats(pgid).items()}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {p: t - before.get(p, 0.0) for p, t in after.items()}


def _group_cpu_s(pgid: int) -> float:
    return sum(group_cpu(pgid).values())


def wait_idle(srv: Server, *, max_cpu: float = 0.15, window_s: float = 1.0,
              timeout_s: float = 180) -> float:
    """Wait until the server's processes use < ``max_cpu`` of a core over ``window_s``."""
    t0 = time.monotonic()
    last = _group_cpu_s(srv.proc.pid)
    while time.monotonic() - t0 < timeout_s:
        time.sleep(window_s)
        now = _group_cpu_s(srv.proc.pid)
        if (now - last) / window_s < max_cpu:
            return time.monotonic() - t0
        last = now
    return time.monotonic() - t0


def group_rss_mb(srv: Server) -> float:
    total = 0
    for pid in _group_stats(srv.proc.pid):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total / 2**20


def stop(srv: Server, grace_s: float = 10) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after ``grace_s``."""
    pgid = srv.proc.pid  # start_new_session: the group id is the leader's pid
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if srv.proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.1)
        if srv.proc.poll() is not None and not _group_alive(pgid):
            break
    if srv in _LIVE:
        _LIVE.remove(srv)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_all() -> None:
    for srv in list(_LIVE):
        stop(srv, grace_s=5)
