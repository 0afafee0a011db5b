"""Shadow versions scored in a process of their own, beside each ``cd4ml serve`` worker.

A shadow's copy of a request costs about as much as the request itself (checking the
rows, encoding them, calling the model). Run on a thread of the worker, that work took
the worker's interpreter from the live requests and doubled their CPU; live p99 grew
many times over at half the saturation rate. Here the worker only hands a copy of the
request to a bounded queue (never waiting: a full queue drops the copy, counted as
``dropped``) and a process of its own, on the other core, does the rest:

- it takes every copy waiting (up to :data:`BATCH`), checks each against each shadow
  version's signature, predicts once per version for all the copies that passed (one
  model call for many requests), and appends the answers to the prediction log with
  role ``shadow`` under the live request's id (its own writer session; the log is made
  for several writing processes);
- it loads the shadow versions from the registry itself, by name and version, keeping
  ``serving.keep_loaded`` of them;
- it sends the outcome counts and latencies back; one thread of the worker, asleep on
  that queue, adds them to ``cd4ml_shadow_requests_total`` and the shadow role's
  ``cd4ml_routed_latency_seconds`` (so ``/metrics`` shows them with one worker or many).

A process that dies is started again (at most once per :data:`RESTART_S`) when the queue
is next found full. In-process apps (``create_app`` without a project) keep the thread
of :class:`cd4ml.serving.router.ShadowRunner`.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.serving.router import ShadowJob

__all__ = ["ShadowSpec", "ShadowCopy", "ShadowProcess", "BATCH", "RESTART_S"]

log = logging.getLogger("cd4ml.serve")

#: copies scored together at most (one model call per shadow version for all of them)
BATCH = 256
#: a dead shadow process is started again at most this often
RESTART_S = 10.0


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """What the shadow process needs to load versions and write the log: the project."""

    project_dir: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
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
    """The worker's side: :meth:`offer` never blocks; :meth:`close` finishes the queue."""

    def __init__(self, spec: ShadowSpec, *, maxsize: int, metrics: Any = None) -> None:
        self.spec, self.maxsize, self.metrics = spec, maxsize, metrics
        self._ctx = multiprocessing.get_context("spawn")
        self.done = 0
        self._last_start = 0.0
        self._start()

    def _start(self) -> None:
        self._last_start = time.monotonic()
        self.jobs: Any = self._ctx.Queue(maxsize=self.maxsize)
        self.results: Any = self._ctx.Queue()
        self.proc = self._ctx.Process(target=run, args=(self.spec, self.jobs, self.results),
                                      name="cd4ml-shadow", daemon=True)
        self.proc.start()
        self._collector = threading.Thread(target=self._collect, args=(self.results,),
                                           name="cd4ml-shadow-results", daemon=True)
        self._collector.start()

    def _count(self, deployment: str, version: int, outcome: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.shadow.labels(deployment, str(version), outcome).inc(n)

    def offer(self, job: ShadowJob) -> bool:
        routes = job.routes
        copy = ShadowCopy(routes[0].deployment,
                          tuple((r.model.name, r.version) for r in routes),
                          list(job.records), job.matrix, job.request_id, job.endpoint,
                          job.content_type, job.event_ts)
        try:
            self.jobs.put_nowait(copy)
            return True
        except queue.Full:
            for r in routes:
                self._count(r.deployment, r.version, "dropped")
            if not self.proc.is_alive() and time.monotonic() - self._last_start > RESTART_S:
                log.error("the shadow process ended (exit code %s); starting it again",
                          self.proc.exitcode, extra={"event": "shadow_process_restarted"})
                self._start()
            return False

    def _collect(self, results: Any) -> None:
        """Add what the process reports to the worker's metrics (a thread asleep on the
        queue between reports)."""
        while True:
            msg = results.get()
            if msg is None:
                return
            for (version, outcome), n in msg.counts.items():
                self._count(msg.deployment, version, outcome, n)
                if outcome != "dropped":
                    self.done += n
            if self.metrics is not None:
                for version, secs in msg.latencies.items():
                    hist = self.metrics.routed_latency.labels(msg.deployment, str(version),
                                                              "shadow")
                    for s in secs:
                        hist.observe(s)

    def status(self) -> dict[str, Any]:
        """``/health``'s view: where the shadows run and how far they are."""
        return {"runs_in": "process", "pid": self.proc.pid, "alive": self.proc.is_alive(),
                "scored": self.done, "waiting": self.jobs.qsize()}

    def close(self, timeout: float = 5) -> None:
        """Let the process score what is queued (up to ``timeout``), then stop it."""
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(1)
            self.results.put(None)
        self._collector.join(timeout)


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


def run(spec: ShadowSpec, jobs: Any, results: Any) -> None:
    """The shadow process: score what is queued until ``None`` comes."""
    from cd4ml.config import load_config
    from cd4ml.serving.server import open_log

    root = Path(spec.project_dir)
    cfg, _ = load_config(root, list(spec.overrides))
    plog = open_log(cfg.serving, root)
    versions = _Versions(cfg, root)
    try:
        stop = False
        while not stop:
            first = jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < BATCH:
                try:
                    nxt = jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            for out in score_batch(batch, versions, plog):
                results.put(out)
    finally:
        if plog is not None:
            plog.close()
        versions.close()
        results.put(None)


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
