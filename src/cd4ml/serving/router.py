"""The router: the one place the server chooses which model version answers a request.

A deployment (:mod:`cd4ml.serving.deployment`) says which versions serve it, in which
roles and shares. Each worker keeps the versions it names loaded and routes by a
:class:`RoutingTable` built from one revision of that state: the live routes with their
shares, the shadows, and the incumbent (``stable``, or ``blue``) that answers when no
split applies. A table is immutable and replaced by one reference assignment, so a
request routes by one revision from start to end, and a switch or rollback loses none.

Per request (:meth:`RoutingTable.choose`), with one live version taking every request
the choice costs one attribute read. Otherwise the deployment's ``key`` (a request
field, e.g. ``Store``) is hashed with the deployment's salt (:class:`~cd4ml.rollout.
sticky.Split`), so one unit sees one version on every worker and after restarts; a
request without the key follows the deployment's ``fallback`` (its request id by
default). A multi-row request is routed by its first row's key: one version answers a
whole request.

:class:`DeploymentWatcher` polls the deployment every ``serving.poll_interval_s``
(what ``resolve`` reads: the state and the registry row of each version it names),
loads and warms up each version not yet loaded (a version that fails is skipped until
its digest changes, and its share goes to the incumbent), keeps up to
``serving.keep_loaded`` versions so that a rollback needs no load, and swaps the table
in. The :class:`~cd4ml.serving.hotswap.ModelHolder` holds the *primary* version, the
one with the largest share, which the pages, the OpenAPI document and ``/health`` describe.

A shadow gets a copy of each request after the answer is sent, through a bounded queue:
to a process of its own under ``cd4ml serve`` (:mod:`cd4ml.serving.shadow_process`),
else to a thread (:class:`ShadowRunner`). Its answer is logged with role
``shadow`` and the live request's id, never returned; a full queue drops the copy and
counts it (``cd4ml_shadow_requests_total{outcome="dropped"}``).

Serving reads deployment state and never writes it: the decisions are the rollout
controller's (:mod:`cd4ml.rollout.controller`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cd4ml.serving.deployment import DeploymentState
from cd4ml.serving.sticky import Split
from cd4ml.serving.contracts import contract_class
from cd4ml.serving.hotswap import ModelHolder, warm_up

__all__ = ["Route", "RoutingTable", "Router", "DeploymentWatcher", "ShadowRunner",
           "single_table"]

log = logging.getLogger("cd4ml.serve")


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One loaded version in one role of a deployment, with its metric children."""

    deployment: str
    model: Any
    role: str
    share: float | None
    ok: Any = None
    error: Any = None
    refused: Any = None
    latency: Any = None

    @property
    def version(self) -> int:
        return int(self.model.version)

    @property
    def arm(self) -> str:
        """The name the split knows it by: ``v3``."""
        return f"v{self.model.version}"

    @classmethod
    def of(cls, deployment: str, model: Any, role: str, share: float | None,
           metrics: Any = None) -> Route:
        if metrics is None:
            return cls(deployment, model, role, share)
        v = str(model.version)
        return cls(deployment, model, role, share,
                   *(metrics.routed.labels(deployment, v, role, o)
                     for o in ("ok", "error", "refused")),
                   metrics.routed_latency.labels(deployment, v, role))


@dataclass(frozen=True, slots=True, eq=False)
class RoutingTable:
    """One revision of a deployment, loaded: how each request is routed."""

    deployment: str
    revision: int
    incumbent: Route
    live: tuple[Route, ...]
    shadows: tuple[Route, ...] = ()
    split: Split | None = None  # None: one live route takes every request
    key: str | None = None
    fallback: str = "request_id"
    by_arm: Mapping[str, Route] = field(default_factory=dict)
    #: the key's position in the signature, for a request given as one matrix
    key_index: int | None = None
    #: the key matched in any case (``Store`` is ``store``), as the model's fields are
    key_any_case: bool = False

    @property
    def primary(self) -> Route:
        """The live route with the largest share (the incumbent on a tie)."""
        best = self.incumbent
        for r in self.live:
            if (r.share or 0.0) > (best.share or 0.0):
                best = r
        return best

    def pinned(self, version: int) -> Route | None:
        """The live route of ``version`` (a v2 request naming its version), if loaded."""
        return next((r for r in self.live if r.version == version), None)

    def choose(self, records: Sequence[Any], matrix: np.ndarray | None,
               request_id: str) -> Route:
        """The route of a request (see the module's docstring)."""
        split = self.split
        if split is None:
            return self.live[0] if self.live else self.incumbent
        if self.key is None:
            return self.by_arm[split.of_request(request_id)]
        value: Any = None
        if matrix is not None:
            if self.key_index is not None and len(matrix):
                value = matrix[0, self.key_index]
                value = None if value != value else float(value)  # NaN: missing
        elif records and isinstance(records[0], Mapping):
            rec = records[0]
            value = rec.get(self.key)
            if value is None and self.key_any_case:
                low = self.key.lower()
                value = next((v for k, v in rec.items()
                              if isinstance(k, str) and k.lower() == low), None)
        a = split.assign(self.key, value, request_id=request_id, fallback=self.fallback)
        if a.by != "fallback":
            return self.by_arm[a.arm]
        return next((r for r in self.live if r.role == a.arm), self.incumbent)

    def describe(self) -> dict[str, Any]:
        """What ``/health`` says of it."""
        return {"deployment": self.deployment, "revision": self.revision,
                "routes": [{"version": r.version, "role": r.role, "share": r.share}
                           for r in (*self.live, *self.shadows)],
                "key": self.key}


def single_table(model: Any, deployment: str | None = None, metrics: Any = None,
                 ) -> RoutingTable:
    """A table where ``model`` answers everything (an app built around one model)."""
    r = Route.of(deployment or model.name, model, "stable", 1.0, metrics)
    return RoutingTable(r.deployment, 0, r, (r,), by_arm={r.arm: r})


def build_table(state: DeploymentState, models: Mapping[int, Any], metrics: Any = None,
                ) -> RoutingTable | None:
    """The table of ``state`` over the versions loaded in ``models``; a live version
    not loaded gives its share to the incumbent. None when the incumbent is not loaded."""
    inc = state.incumbent
    if inc is None or inc.version not in models:
        return None
    routes, shadows, lost = [], [], 0.0
    for a in state.arms:
        m = models.get(a.version)
        if a.role == "shadow":
            if m is not None:
                shadows.append(Route.of(state.name, m, a.role, None, metrics))
            continue
        if m is None:
            lost += a.share or 0.0
            continue
        routes.append((a, m))
    built = []
    incumbent = None
    for a, m in routes:
        share = (a.share or 0.0) + (lost if a is inc else 0.0)
        r = Route.of(state.name, m, a.role, share, metrics)
        built.append(r)
        if a is inc:
            incumbent = r
    assert incumbent is not None
    taking = [r for r in built if (r.share or 0.0) > 0]
    split = None
    if len(taking) > 1:
        split = Split({r.arm: float(r.share or 0.0) for r in built}, state.salt)
    live = tuple(taking) if split is None and taking else tuple(built)
    key_index, any_case = None, False
    if state.key is not None:
        fields = list(getattr(incumbent.model, "fields", ()) or ())
        key_index = fields.index(state.key) if state.key in fields else None
        any_case = not contract_class(incumbent.model).case_sensitive
    return RoutingTable(state.name, state.revision, incumbent, live or (incumbent,),
                        tuple(shadows), split, state.key, state.fallback,
                        {r.arm: r for r in built}, key_index, any_case)


class Router:
    """The table the requests route by, replaced whole (one reference assignment)."""

    def __init__(self, holder: ModelHolder, table: RoutingTable | None = None) -> None:
        self.holder = holder
        self.table = table
        self.listeners: list[Callable[[RoutingTable | None, RoutingTable], None]] = []

    def swap(self, table: RoutingTable) -> None:
        old, self.table = self.table, table
        primary = table.primary.model
        if self.holder.current is not primary:
            self.holder.swap(primary)
        for fn in self.listeners:
            fn(old, table)

    def follow_holder(self, metrics: Any = None) -> None:
        """Route everything to the holder's model (an app built around a holder alone)."""
        def on_swap(old: Any, new: Any) -> None:
            if self.table is None or self.table.primary.model is not new:
                self.table = single_table(new, metrics=metrics)

        self.holder.listeners.append(on_swap)
        if self.holder.current is not None:
            self.table = single_table(self.holder.current, metrics=metrics)


class DeploymentWatcher:
    """Loads the versions a deployment names and keeps its routing table current.

    ``resolve()`` gives the deployment state and, per version it names, the registry
    row (``version``, ``digest``); ``load(row)`` loads one version."""

    def __init__(self, router: Router, *,
                 resolve: Callable[[], tuple[DeploymentState, dict[int, dict[str, Any]]]],
                 load: Callable[[dict[str, Any]], Any], interval_s: float,
                 keep_loaded: int = 3, metrics: Any = None,
                 on_load_error: Callable[[Exception], None] | None = None) -> None:
        self.router, self.resolve, self.load = router, resolve, load
        self.interval, self.keep = interval_s, keep_loaded
        self.metrics, self.on_load_error = metrics, on_load_error
        self.loaded: OrderedDict[tuple[int, str], Any] = OrderedDict()
        self.failed: set[tuple[int, str]] = set()
        self.last_error: str | None = None
        self._seen: tuple[int, str, tuple[tuple[int, str], ...]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cd4ml-deployment-watcher",
                                        daemon=True)

    @property
    def holder(self) -> ModelHolder:
        return self.router.holder

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _model(self, row: dict[str, Any]) -> Any | None:
        key = (int(row["version"]), str(row["digest"]))
        m = self.loaded.get(key)
        if m is not None:
            self.loaded.move_to_end(key)
            return m
        if key in self.failed:
            return None
        t0 = time.perf_counter()
        try:
            m = self.load(row)
            warm_up(m)
        except Exception as exc:
            self.failed.add(key)
            self.last_error = f"version {key[0]}: {exc}"
            t = self.router.table
            log.error("could not load version %s: %s; %s", key[0], exc,
                      "still serving " + ", ".join(f"version {r.version}" for r in t.live)
                      if t else "nothing serves",
                      extra={"event": "model_load_failed", "version": key[0]})
            if self.on_load_error:
                self.on_load_error(exc)
            return None
        log.info("loaded %s version %s in %.1f s", m.name, m.version,
                 time.perf_counter() - t0,
                 extra={"event": "model_loaded", "model": m.name, "version": m.version,
                        "load_s": round(time.perf_counter() - t0, 3)})
        self.loaded[key] = m
        return m

    def check(self) -> bool:
        """One poll: load what the deployment names, swap the table if it changed.
        True if a new table was swapped in."""
        state, rows = self.resolve()
        seen = (state.revision, state.name,
                tuple(sorted((v, str(r["digest"])) for v, r in rows.items())))
        if seen == self._seen and self.router.table is not None:
            return False
        models = {}
        for a in state.arms:
            row = rows.get(a.version)
            m = self._model(row) if row is not None else None
            if m is not None:
                models[a.version] = m
        table = build_table(state, models, self.metrics)
        if table is None:
            if self.router.table is None:
                self.last_error = self.last_error or f"deployment {state.name!r}: nothing to serve"
            return False
        self._seen = seen
        wanted = {(v, str(r["digest"])) for v, r in rows.items()}
        while len(self.loaded) > max(self.keep, len(wanted)):
            oldest = next((k for k in self.loaded if k not in wanted), None)
            if oldest is None:
                break
            del self.loaded[oldest]
        old = self.router.table
        self.router.swap(table)
        self.last_error = None
        if self.metrics is not None:
            self.metrics.deployment_revision.labels(table.deployment).set(table.revision)
        log.info("routing deployment %s by revision %s: %s", table.deployment, table.revision,
                 ", ".join(f"v{r.version} {r.role}" + (f" {r.share:.0%}" if r.share is not None
                                                      else "")
                           for r in (*table.live, *table.shadows)),
                 extra={"event": "routing_changed", "deployment": table.deployment,
                        "revision": table.revision,
                        "previous_revision": old.revision if old else None})
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as exc:  # store unreachable, deployment removed...
                self.last_error = str(exc)
                log.error("reading the deployment failed: %s", exc,
                          extra={"event": "deployment_poll_failed"})
            if self.router.table is not None and self.interval <= 0:
                return
            self._stop.wait(self.interval if self.interval > 0 else 1.0)


@dataclass(slots=True)
class ShadowJob:
    """A copy of one answered request for the shadows."""

    records: Sequence[Any]
    matrix: np.ndarray | None
    request_id: str
    endpoint: str
    content_type: str
    event_ts: float | None
    routes: tuple[Route, ...]


class ShadowRunner:
    """Runs the shadows' copies of requests on one thread, off the request path.

    ``score(route, job)`` predicts and logs one copy; :meth:`offer` never blocks."""

    def __init__(self, score: Callable[[Route, ShadowJob], None], *, maxsize: int,
                 metrics: Any = None) -> None:
        self.score, self.metrics = score, metrics
        self.jobs: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=maxsize)
        self.done = 0
        self._thread = threading.Thread(target=self._run, name="cd4ml-shadow", daemon=True)
        self._thread.start()

    def _count(self, route: Route, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.shadow.labels(route.deployment, str(route.version), outcome).inc()

    def offer(self, job: ShadowJob) -> bool:
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            for r in job.routes:
                self._count(r, "dropped")
            return False

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            for r in job.routes:
                try:
                    self.score(r, job)
                    self._count(r, "ok")
                except Exception as exc:  # noqa: BLE001 - a shadow never fails a request
                    self._count(r, "error")
                    log.warning("shadow version %s failed: %s", r.version, exc,
                                extra={"event": "shadow_failed", "version": r.version})
            self.done += 1

    def prepare(self, routes: Any) -> None:
        """Nothing to do: the routes' versions are this process's, loaded."""

    def status(self) -> dict[str, Any]:
        """``/health``'s view: where the shadows run and how far they are."""
        return {"runs_in": "thread", "scored": self.done, "waiting": self.jobs.qsize()}

    def close(self, timeout: float = 5) -> None:
        """Finish the queued copies (up to ``timeout``), then stop."""
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

