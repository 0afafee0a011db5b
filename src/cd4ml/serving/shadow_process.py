"""Shadow versions scored in a process of their own, beside each ``cd4ml serve`` worker.

A shadow's copy of a request costs about as much as the request itself (checking the
rows, encoding them, calling the model). Run on a thread of the worker, that work took
the worker's interpreter from the live requests and doubled their CPU; live p99 grew
many times over at half the saturation rate. Here the worker keeps only the copies
(a list append per request) and a process of its own, on the other core, does the rest:

- the worker sends what it holds as one message, every :data:`SEND_EVERY` copies or
  :data:`SEND_AFTER_S` after the first (a timer on its event loop), over a Unix
  ``SOCK_SEQPACKET`` socket pair that never blocks it: a message the socket has no
  room for (the process is behind) is dropped whole and counted as ``dropped``;
- the process takes every message waiting, checks each copy against each shadow
  version's signature, predicts once per version for all the copies that passed (one
  model call for many requests), and appends the answers to the prediction log with
  role ``shadow`` under the live request's id (its own writer session; the log is made
  for several writing processes);
- it loads the shadow versions from the registry itself, by name and version, keeping
  ``serving.keep_loaded`` of them;
- it sends the outcome counts and latencies back on a second socket pair; one thread of
  the worker, asleep on it, adds them to ``cd4ml_shadow_requests_total`` and the shadow
  role's ``cd4ml_routed_latency_seconds`` (so ``/metrics`` shows them with one worker or
  many).

The process is ``python -m cd4ml.serving.shadow_process`` (it imports nothing of the
worker's ``__main__``); it ends when the worker's end of the socket closes, so it never
outlives its worker. One that dies is started again (at most once per
:data:`RESTART_S`) on the next send. In-process apps (``create_app`` without a project)
keep the thread of :class:`cd4ml.serving.router.ShadowRunner`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.serving.router import ShadowJob

__all__ = ["ShadowSpec", "ShadowCopy", "ShadowProcess", "score_batch", "BATCH",
           "SEND_EVERY", "SEND_AFTER_S", "RESTART_S"]

log = logging.getLogger("cd4ml.serve")

#: copies scored together at most (one model call per shadow version for all of them)
BATCH = 512
#: the worker sends its copies once it holds this many ...
SEND_EVERY = 64
#: ... or this long after the first of them
SEND_AFTER_S = 0.02
#: a message's size at most (a bigger batch is sent in parts; a bigger copy is dropped)
MAX_MESSAGE = 128 * 1024
#: a dead shadow process is started again at most this often
RESTART_S = 10.0


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """What the shadow process needs to load versions and write the log: the project."""

    project_dir: str
    overrides: tuple[str, ...] = ()


@dataclass(slots=True)
class ShadowCopy:
    """A copy of one answered request, as it crosses to the shadow process: the
    versions by name and number (the process loads its own), never the objects."""

    deployment: str
    versions: tuple[tuple[str, int], ...]
    records: list[Any]
    matrix: np.ndarray | None
    request_id: str
    endpoint: str
    content_type: str
    event_ts: float | None

    def __reduce__(self) -> tuple[Any, ...]:
        # by its fields: a tenth of the default reduction's cost for a slotted class
        return (ShadowCopy, (self.deployment, self.versions, self.records, self.matrix,
                             self.request_id, self.endpoint, self.content_type,
                             self.event_ts))


@dataclass(frozen=True, slots=True)
class Warm:
    """Load these versions now (sent when a routing table first names them), so the
    first copies do not wait for a load."""

    versions: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class Outcomes:
    """What one batch came to, sent back to the worker."""

    deployment: str
    counts: dict[tuple[int, str], int] = field(default_factory=dict)
    #: seconds per copy scored, by version
    latencies: dict[int, list[float]] = field(default_factory=dict)

    def add(self, version: int, outcome: str, n: int = 1) -> None:
        key = (version, outcome)
        self.counts[key] = self.counts.get(key, 0) + n


class ShadowProcess:
    """The worker's side: :meth:`offer` never blocks; :meth:`close` lets the process
    finish what it was sent."""

    def __init__(self, spec: ShadowSpec, *, maxsize: int, metrics: Any = None) -> None:
        self.spec, self.metrics = spec, metrics
        #: copies held before a send, at most (``serving.shadow_queue``)
        self.maxsize = maxsize
        self.done = 0
        self.sent = 0
        self._pending: list[ShadowCopy] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()  # offer() from a thread as well as the loop
        self._last_start = 0.0
        self._closed = False
        self._start()

    def _start(self) -> None:
        self._last_start = time.monotonic()
        jobs, their_jobs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        results, their_results = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        jobs.setblocking(False)
        cmd = [sys.executable, "-m", "cd4ml.serving.shadow_process",
               "--jobs-fd", str(their_jobs.fileno()),
               "--results-fd", str(their_results.fileno()),
               "--project", self.spec.project_dir,
               *(a for o in self.spec.overrides for a in ("--set", o))]
        self.proc = subprocess.Popen(cmd, pass_fds=(their_jobs.fileno(),
                                                    their_results.fileno()))
        their_jobs.close()
        their_results.close()
        self.jobs, self.results = jobs, results
        self._collector = threading.Thread(target=self._collect, args=(results,),
                                           name="cd4ml-shadow-results", daemon=True)
        self._collector.start()

    def _count(self, deployment: str, version: int, outcome: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.shadow.labels(deployment, str(version), outcome).inc(n)

    def _drop(self, copies: list[ShadowCopy]) -> None:
        for c in copies:
            for _, version in c.versions:
                self._count(c.deployment, version, "dropped")

    def prepare(self, routes: Any) -> None:
        """Have the process load the versions of ``routes`` before their first copy."""
        if self._closed or self.proc.poll() is not None:
            return
        try:
            self.jobs.send(pickle.dumps([Warm(tuple((r.model.name, r.version)
                                                    for r in routes))]))
        except OSError:
            pass  # full or gone: the first copies load them instead

    def offer(self, job: ShadowJob) -> bool:
        """Hold a copy of ``job`` for the next send (never waits)."""
        routes = job.routes
        copy = ShadowCopy(routes[0].deployment,
                          tuple((r.model.name, r.version) for r in routes),
                          list(job.records), job.matrix, job.request_id, job.endpoint,
                          job.content_type, job.event_ts)
        with self._lock:
            if len(self._pending) >= self.maxsize:
                self._drop([copy])
                return False
            self._pending.append(copy)
            n = len(self._pending)
        if n >= SEND_EVERY:
            self.send()
        elif n == 1:
            try:
                self._timer = asyncio.get_running_loop().call_later(SEND_AFTER_S, self.send)
            except RuntimeError:  # not on an event loop: nothing would fire a timer
                self.send()
        return True

    def send(self) -> None:
        """Send the copies held (never waits: what the socket has no room for is
        dropped and counted)."""
        with self._lock:
            copies, self._pending = self._pending, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if not copies:
            return
        if self._closed:
            self._drop(copies)
            return
        if self.proc.poll() is not None:
            self._drop(copies)
            if time.monotonic() - self._last_start > RESTART_S:
                log.error("the shadow process ended (exit code %s); starting it again",
                          self.proc.returncode, extra={"event": "shadow_process_restarted"})
                self.jobs.close()
                self._start()
            return
        for part in _parts(copies):
            try:
                self.jobs.send(part.data)
                self.sent += len(part.copies)
            except (BlockingIOError, OSError):  # full (behind), too big, or gone
                self._drop(part.copies)

    def _collect(self, results: socket.socket) -> None:
        """Add what the process reports to the worker's metrics (a thread asleep on the
        socket between reports); it closes the socket when the process's end closes."""
        with results:
            while True:
                try:
                    data = results.recv(MAX_MESSAGE)
                except OSError:
                    return
                if not data:
                    return
                self._add(pickle.loads(data))

    def _add(self, msg: Outcomes) -> None:
        """Add one report to the counts and the metrics."""
        for (version, outcome), n in msg.counts.items():
            self._count(msg.deployment, version, outcome, n)
            self.done += n
        if self.metrics is not None:
            for version, secs in msg.latencies.items():
                hist = self.metrics.routed_latency.labels(msg.deployment, str(version),
                                                          "shadow")
                for s in secs:
                    hist.observe(s)

    def status(self) -> dict[str, Any]:
        """``/health``'s view: where the shadows run and how far they are."""
        return {"runs_in": "process", "pid": self.proc.pid,
                "alive": self.proc.poll() is None, "sent": self.sent, "scored": self.done,
                "waiting": len(self._pending)}

    def close(self, timeout: float = 5) -> None:
        """Send what is held, let the process score it (up to ``timeout``), then stop."""
        self.send()
        self._closed = True
        self.jobs.close()  # the process reads to the end, then sees the close
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
        self._collector.join(timeout)


@dataclass(frozen=True, slots=True)
class _Part:
    copies: list[ShadowCopy]
    data: bytes


def _parts(copies: list[ShadowCopy]) -> list[_Part]:
    """``copies`` as messages of at most :data:`MAX_MESSAGE` bytes (halved until each
    fits; a single copy too big is sent alone and refused by the socket)."""
    data = pickle.dumps(copies, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) <= MAX_MESSAGE or len(copies) == 1:
        return [_Part(copies, data)]
    half = len(copies) // 2
    return _parts(copies[:half]) + _parts(copies[half:])


# -- the shadow process ------------------------------------------------------------------
class _Versions:
    """The shadow versions this process has loaded (``serving.keep_loaded`` of them)."""

    def __init__(self, cfg: Any, root: Path) -> None:
        from cd4ml.store import open_stores

        self.cfg, self.keep = cfg, cfg.serving.keep_loaded
        self.stores = open_stores(cfg.store, root)
        self.loaded: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def contract(self, name: str, version: int) -> Any:
        from cd4ml.registry.loader import load_version
        from cd4ml.serving.contracts import contract_for

        key = (name, version)
        c = self.loaded.get(key)
        if c is None:
            st = self.stores
            model = load_version(st.metadata, st.artifacts, name, version,
                                 forecast_table=self.cfg.serving.forecast_table)
            c = self.loaded[key] = contract_for(model, log=True)
            while len(self.loaded) > self.keep:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(key)
        return c

    def close(self) -> None:
        self.stores.close()


def run(spec: ShadowSpec, jobs: socket.socket, results: socket.socket) -> None:
    """The shadow process: score what the worker sends until its socket closes."""
    from cd4ml.config import load_config
    from cd4ml.serving.prediction_log import open_log

    root = Path(spec.project_dir)
    cfg, _ = load_config(root, list(spec.overrides))
    plog = open_log(cfg.serving, root)
    versions = _Versions(cfg, root)
    try:
        while True:
            jobs.setblocking(True)
            data = jobs.recv(MAX_MESSAGE)
            if not data:
                break  # the worker closed its end
            batch: list[Any] = pickle.loads(data)
            jobs.setblocking(False)
            while len(batch) < BATCH:  # and whatever else is waiting
                try:
                    more = jobs.recv(MAX_MESSAGE)
                except BlockingIOError:
                    break
                if not more:
                    break
                batch.extend(pickle.loads(more))
            for w in (x for x in batch if isinstance(x, Warm)):
                for name, version in w.versions:
                    try:
                        versions.contract(name, version)
                    except Exception as exc:  # noqa: BLE001 - said again by its copies
                        log.warning("shadow version %s could not be loaded: %s", version,
                                    exc, extra={"event": "shadow_failed",
                                                "version": version})
            batch = [x for x in batch if isinstance(x, ShadowCopy)]
            for out in score_batch(batch, versions, plog):
                results.send(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        if plog is not None:
            plog.close()
        versions.close()
        results.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cd4ml.serving.shadow_process",
                                 description="a cd4ml serve worker's shadow versions")
    ap.add_argument("--jobs-fd", type=int, required=True)
    ap.add_argument("--results-fd", type=int, required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    a = ap.parse_args(argv)
    from cd4ml.serving.ops import log_config

    logging.config.dictConfig(log_config())  # the worker's JSON lines, on its stderr
    jobs = socket.socket(fileno=a.jobs_fd)
    results = socket.socket(fileno=a.results_fd)
    run(ShadowSpec(a.project, tuple(a.overrides)), jobs, results)
    return 0


def score_batch(batch: list[ShadowCopy], versions: Any, plog: Any) -> list[Outcomes]:
    """Score each copy with each of its shadow versions and log the answers; one model
    call per version for the copies that passed its check."""
    by_version: dict[tuple[str, str, int], list[ShadowCopy]] = {}
    for copy in batch:
        for name, version in copy.versions:
            by_version.setdefault((copy.deployment, name, version), []).append(copy)
    outs: dict[str, Outcomes] = {}
    for (deployment, name, version), copies in by_version.items():
        out = outs.setdefault(deployment, Outcomes(deployment))
        t0 = time.perf_counter()
        try:
            c = versions.contract(name, version)
        except Exception as exc:  # noqa: BLE001 - a shadow never fails a request
            out.add(version, "error", len(copies))
            log.warning("shadow version %s could not be loaded: %s", version, exc,
                        extra={"event": "shadow_failed", "version": version})
            continue
        checked = []
        for copy in copies:
            try:
                prep = (c.check(copy.records) if copy.matrix is None
                        else c.check_matrix(copy.matrix))
                checked.append((copy, prep))
            except Exception as exc:  # noqa: BLE001 - counted, never raised
                out.add(version, "error")
                log.warning("shadow version %s refused request %s: %s", version,
                            copy.request_id, exc,
                            extra={"event": "shadow_failed", "version": version})
        if not checked:
            continue
        try:
            outputs = c.predict_many([p for _, p in checked])
        except Exception as exc:  # noqa: BLE001
            out.add(version, "error", len(checked))
            log.warning("shadow version %s failed: %s", version, exc,
                        extra={"event": "shadow_failed", "version": version})
            continue
        per = (time.perf_counter() - t0) / len(checked)
        now = time.time()
        for (copy, prep), o in zip(checked, outputs):
            if plog is not None:
                plog.append(c.log_record(copy.request_id, now, copy.endpoint, per * 1000,
                                         prep, o, copy.content_type, b"", copy.event_ts,
                                         "shadow"))
        out.add(version, "ok", len(checked))
        out.latencies.setdefault(version, []).extend([per] * len(checked))
    return list(outs.values())


if __name__ == "__main__":
    # run as the imported module, so what it pickles names cd4ml.serving.shadow_process
    from cd4ml.serving import shadow_process

    raise SystemExit(shadow_process.main())
