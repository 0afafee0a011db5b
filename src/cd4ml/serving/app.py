"""The HTTP app: the model's web form at ``/`` and JSON at ``POST /predict``.

Every protocol (native JSON, Open Inference Protocol v2, MLflow's ``/invocations``)
goes through :meth:`Runtime.score`: the request's rows are checked against the model's
signature and turned into what the model sees (a forecast's precomputed feature rows
looked up, a tabular model's inputs encoded by its bundled transform), the model is
called once, and the prediction is handed to the prediction log. What differs by kind
of model is asked of the version's contract (:mod:`cd4ml.serving.contracts`), never of
its task. Refused requests are counted per field and reason
(``cd4ml_request_refusals``). Around them: ``POST /feedback``
(actuals and rewards), ``/ready``, ``/live``, ``/health``, ``/metrics``, and the
middleware of :mod:`cd4ml.serving.ops` (request ids, limits, metrics, access log).

``cd4ml serve`` builds the app in each worker (:mod:`cd4ml.serving.server`): the model
is loaded in the background (readiness is false until then), and a watcher follows the
serving alias to swap versions while serving (:mod:`cd4ml.serving.hotswap`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from cd4ml.config import ServingConfig
from cd4ml.errors import (Cd4mlError, MissingExtraError, NotFoundError, RequestError,
                          UnavailableError, http_status)
from cd4ml.serving.contracts import REASONS, Contract, contract_for
from cd4ml.serving.feedback import check_feedback
from cd4ml.serving.guard import JSON, Guard
from cd4ml.serving.hotswap import ModelHolder
from cd4ml.serving.jsonbody import parse_json
from cd4ml.serving.limits import read_checked
from cd4ml.serving.router import Route, Router, RoutingTable, ShadowJob, ShadowRunner
from cd4ml.serving.shadow_process import ShadowProcess, ShadowSpec
from cd4ml.predlog import PredictionLog

try:
    import orjson
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    from cd4ml.serving.ops import METRICS, OpsMiddleware, metrics_text
    from cd4ml.serving.openapi import install_spec
    from cd4ml.serving.routes import PROBE, RouteTable, context_of, error_body
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("cd4ml serve", "serve", _exc.name or "fastapi") from _exc

__all__ = ["ModelHolder", "Runtime", "Scored", "create_app"]

log = logging.getLogger("cd4ml.serve")

@dataclass(frozen=True, slots=True)
class Scored:
    """A request's answer: the version that gave it, its contract and the outputs."""

    model: Any
    contract: Contract
    outputs: np.ndarray


class Runtime:
    """What the routes share: the router (which version answers), the prediction log,
    the settings, and the contract of each loaded version
    (:mod:`cd4ml.serving.contracts`)."""

    def __init__(self, holder: ModelHolder, settings: ServingConfig,
                 plog: PredictionLog | None = None, watcher: Any | None = None,
                 draining: threading.Event | None = None, guard: Guard | None = None,
                 router: Router | None = None,
                 shadow_spec: ShadowSpec | None = None) -> None:
        self.holder, self.settings, self.plog, self.watcher = holder, settings, plog, watcher
        #: what every POST must show before its body is read (:mod:`cd4ml.serving.guard`)
        self.guard = guard or Guard.of(settings.allowed_origins, None)
        #: set on SIGTERM/SIGINT (and at shutdown): readiness turns false before it stops
        self.draining = draining or threading.Event()
        self._counters: dict[tuple[str, int | None, str], Any] = {}
        self._contracts: weakref.WeakKeyDictionary[Any, Contract] = \
            weakref.WeakKeyDictionary()
        #: the last model scored and its contract: one identity test per request, where
        #: the weak dictionary's lookup (a weak reference made per call) cost ~0.4 µs
        self._last: tuple[Any, Contract | None] = (None, None)
        holder.listeners.append(self._on_swap)
        # a version's contract (and the log's view of it) is ready before its requests
        holder.listeners.append(lambda old, new: self.contract(new))
        if router is None:
            router = Router(holder)
            router.follow_holder(METRICS)
        self.router = router
        router.listeners.append(self._on_table)
        #: where the shadows' copies go, made when a table first names a shadow: a
        #: process of its own with ``shadow_spec`` (``cd4ml serve``), else a thread
        self.shadow_spec = shadow_spec
        self.shadows: ShadowRunner | ShadowProcess | None = None
        if holder.current is not None:
            self._on_swap(None, holder.current)
            self.contract(holder.current)
        if router.table is not None:
            self._on_table(None, router.table)

    @staticmethod
    def _on_swap(old: Any, new: Any) -> None:
        if old is not None:
            METRICS.model_info.labels(old.name, str(old.version)).set(0)
            METRICS.swaps.inc()
        METRICS.model_info.labels(new.name, str(new.version)).set(1)

    def _on_table(self, old: RoutingTable | None, new: RoutingTable) -> None:
        for r in (*new.live, *new.shadows):
            self.contract(r.model)
        if new.shadows:
            if self.shadows is None:
                n = self.settings.shadow_queue
                self.shadows = (ShadowProcess(self.shadow_spec, maxsize=n, metrics=METRICS)
                                if self.shadow_spec is not None else
                                ShadowRunner(self._shadow, maxsize=n, metrics=METRICS))
            self.shadows.prepare(new.shadows)

    def contract(self, model: Any) -> Contract:
        """The contract of a loaded version (made once per version)."""
        last, c = self._last
        if last is model:
            return c  # type: ignore[return-value]
        c = self._contracts.get(model)
        if c is None:
            c = self._contracts[model] = contract_for(model, log=self.plog is not None)
        self._last = (model, c)
        return c

    def readiness(self) -> tuple[bool, str]:
        if self.draining.is_set():
            return False, "draining: the server is shutting down"
        if self.holder.current is None:
            why = f"; last error: {self.watcher.last_error}" if self.watcher and \
                self.watcher.last_error else ""
            return False, f"loading the model{why}"
        return True, "ready"

    def table(self) -> RoutingTable:
        """The routing table now; 503 while nothing is loaded."""
        t = self.router.table
        if t is None:
            raise UnavailableError("the model is still loading; retry shortly "
                                   "(GET /ready says when)")
        return t

    async def score(self, request: Request, records: list[Any], endpoint: str,
                    raw: bytes = b"", content_type: str = "", *,
                    matrix: np.ndarray | None = None, version: int | None = None,
                    ) -> Scored:
        """Choose the version (:mod:`cd4ml.serving.router`), validate, encode or look up
        features, predict once, log; the one path of every protocol. ``matrix``: every
        input in signature order (a v2 2-D tensor), instead of ``records``; ``version``:
        that live version answers (a v2 request naming it). A version other than the
        incumbent that raises is counted against it and the incumbent answers. The
        record logged carries the version's role and the request's event time, if its
        ``X-Event-Time`` gave one (checked with the body, :mod:`cd4ml.serving.guard`)."""
        table = self.table()
        ctx = context_of(request)
        if version is not None:
            route = table.pinned(version)
            if route is None:
                raise NotFoundError(f"version {version} is not served here; served: "
                                    + ", ".join(f"version {r.version}" for r in table.live))
        else:
            route = table.choose(records, matrix, ctx.request_id)
        try:
            c, prep, outputs = await self._predict(route, records, matrix)
        except Exception as exc:
            if route is table.incumbent or version is not None:
                _count(route.refused if isinstance(exc, RequestError) else route.error)
                raise
            # the candidate failed: the incumbent answers; if it refuses too, the input
            # was bad (refused, counted once), else the failure was the candidate's
            inc = table.incumbent
            try:
                c, prep, outputs = await self._predict(inc, records, matrix)
            except RequestError:
                _count(inc.refused if isinstance(exc, RequestError) else route.error)
                raise
            _count(route.error)
            log.warning("version %s (%s) failed, answered by version %s: %s", route.version,
                        route.role, inc.version, exc,
                        extra={"event": "route_failed", "version": route.version,
                               "role": route.role})
            route = inc
        model = route.model
        ctx.model_version = model.version
        latency = time.perf_counter() - ctx.t0
        if route.ok is not None:
            route.ok.inc()
            route.latency.observe(latency)
        if self.plog is not None:  # may refuse the request (serving.log.when_full: reject)
            self.plog.append(c.log_record(ctx.request_id, time.time(), endpoint,
                                          latency * 1000, prep, outputs, content_type, raw,
                                          ctx.event_ts, route.role))
        key = (model.name, model.version, endpoint)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = METRICS.predictions.labels(
                model.name, str(model.version), endpoint)
        counter.inc(len(outputs))
        if table.shadows and self.shadows is not None:
            self.shadows.offer(ShadowJob(records, matrix, ctx.request_id, endpoint,
                                         content_type, ctx.event_ts, table.shadows))
        return Scored(model, c, outputs)

    async def _predict(self, route: Route, records: list[Any], matrix: np.ndarray | None,
                       ) -> tuple[Contract, Any, np.ndarray]:
        c = self.contract(route.model)
        prep = c.check(records) if matrix is None else c.check_matrix(matrix)
        if c.threaded(prep):
            outputs = await run_in_threadpool(c.predict, prep)
        else:
            outputs = c.predict(prep)
        return c, prep, outputs

    def _shadow(self, route: Route, job: ShadowJob) -> None:
        """A shadow's copy of a request: predicted and logged with role ``shadow`` (the
        live request's id; no body, the live record has it), never answered."""
        t0 = time.perf_counter()
        c = self.contract(route.model)
        prep = c.check(job.records) if job.matrix is None else c.check_matrix(job.matrix)
        outputs = c.predict(prep)
        if route.latency is not None:
            route.latency.observe(time.perf_counter() - t0)
        if self.plog is not None:
            self.plog.append(c.log_record(job.request_id, time.time(), job.endpoint,
                                          (time.perf_counter() - t0) * 1000, prep, outputs,
                                          job.content_type, b"", job.event_ts, "shadow"))

    def refused(self, endpoint: str, exc: RequestError) -> None:
        """Count a refused request once per (field, reason) it broke; a field outside
        the served signature, or an error about no one field, counts as ``(other)``."""
        m = self.holder.current
        known = self.contract(m).field_set if m is not None else frozenset()
        pairs = {(e.get("field") if e.get("field") in known else "(other)",
                  e.get("reason") if e.get("reason") in REASONS else "(other)")
                 for e in exc.errors if isinstance(e, dict)} or {("(other)", "(other)")}
        for field, reason in sorted(pairs):
            METRICS.refusals.labels(endpoint, field, reason).inc()


def _count(counter: Any) -> None:
    if counter is not None:
        counter.inc()


def _rows_of(body: Any, limit: int) -> tuple[list[Any], bool]:
    """Request rows and whether the body was a single object."""
    if isinstance(body, dict) and "rows" in body:
        rows = body["rows"]
        if len(body) > 1:
            extra = sorted(k for k in body if k != "rows")
            raise RequestError(f"body: {extra[0]!r} next to 'rows'; give rows only",
                               errors=[{"loc": extra[0], "field": extra[0],
                                        "problem": "unknown key next to 'rows'"}])
        if not isinstance(rows, list):
            raise RequestError("rows: expected a list of objects",
                               errors=[{"loc": "rows", "problem": "expected a list"}])
        single = False
    elif isinstance(body, dict):
        rows, single = [body], True
    elif isinstance(body, list):
        rows, single = body, False
    else:
        raise RequestError("body: expected an object, a list of objects or {\"rows\": [...]}",
                           errors=[{"loc": "body", "problem": "expected an object or a list"}])
    if not rows:
        raise RequestError("rows: the list is empty",
                           errors=[{"loc": "rows", "problem": "at least one row"}])
    if len(rows) > limit:
        raise RequestError(f"rows: {len(rows)} rows is more than the limit of {limit} per "
                           f"request (serving.max_batch_rows)", status=413)
    return rows, single


def _parse_json(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except RequestError as exc:
        exc.errors = [{"loc": "body", "field": None, "value": None, "problem": str(exc)}]
        raise


def create_app(holder: ModelHolder, *, settings: ServingConfig | None = None,
               plog: PredictionLog | None = None, watcher: Any | None = None,
               router: Router | None = None,
               max_batch_rows: int | None = None, max_body_bytes: int | None = None,
               startup_wait_s: float = 0,
               draining: threading.Event | None = None,
               feedback_token: str | None = None,
               shadow_spec: ShadowSpec | None = None) -> Any:
    """The ASGI app (FastAPI inside :class:`OpsMiddleware`).

    With ``startup_wait_s`` the app's startup waits (that long at most) for the first
    model before the server accepts connections; ``cd4ml serve --workers N`` uses it, so
    that the shared socket never hands a request to a worker that is still loading.
    With one worker the port opens at once and ``/ready`` says 503 until the model is in.
    With ``feedback_token`` (``cd4ml serve`` reads it from ``CD4ML_FEEDBACK_TOKEN``),
    ``POST /feedback`` needs it as ``Authorization: Bearer <token>``. With
    ``shadow_spec`` (the project, as ``cd4ml serve`` gives it), shadow versions are
    scored in a process of their own (:mod:`cd4ml.serving.shadow_process`), else on a
    thread of this one.
    """
    s = settings or ServingConfig()
    upd = {k: v for k, v in (("max_batch_rows", max_batch_rows),
                             ("max_body_bytes", max_body_bytes)) if v is not None}
    if upd:
        s = s.model_copy(update=upd)
    rt = Runtime(holder, s, plog, watcher, draining,
                 Guard.of(s.allowed_origins, feedback_token), router, shadow_spec)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if watcher is not None:
            watcher.start()
            deadline = time.monotonic() + startup_wait_s
            while holder.current is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        try:
            yield
        finally:
            rt.draining.set()
            if watcher is not None:
                watcher.stop()
            if rt.shadows is not None:
                rt.shadows.close()
            if plog is not None:
                plog.close()
                log.info("prediction log flushed and closed: %d written", plog.written,
                         extra={"event": "prediction_log_closed", "written": plog.written,
                                "dropped": plog.dropped})
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(title="cd4ml model server", version="1", lifespan=lifespan)

    @app.exception_handler(Cd4mlError)
    async def _cd4ml_error(request: Request, exc: Cd4mlError) -> JSONResponse:
        """Every protocol's errors, in the shape that protocol uses (:func:`error_body`)."""
        ctx = context_of(request)
        ctx.error_type = type(exc).__name__
        status = http_status(exc)
        if isinstance(exc, RequestError):
            rt.refused(ctx.endpoint, exc)
        headers = {"retry-after": "1"} if status == 503 else getattr(exc, "headers", None)
        body = error_body(ctx.protocol, str(exc), "BAD_REQUEST" if status < 500 else
                          "TEMPORARILY_UNAVAILABLE")
        if "detail" in body:
            body["errors"] = getattr(exc, "errors", None) or []
        return JSONResponse(body, status_code=status, headers=headers)

    def ready_response(body_ok: dict[str, Any], key: str = "ready") -> JSONResponse:
        ok, why = rt.readiness()
        if ok:
            return JSONResponse(body_ok)
        return JSONResponse({key: False, "reason": why}, status_code=503,
                            headers={"retry-after": "1"})

    @app.get("/live", tags=[PROBE])
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/ready", tags=[PROBE])
    async def ready() -> JSONResponse:
        m = holder.current
        return ready_response({"ready": True, "model": m.name if m else None,
                               "version": m.version if m else None})

    @app.get("/health", tags=[PROBE])
    async def health() -> JSONResponse:
        m = holder.current
        info: dict[str, Any] = {"status": "ok", "pid": os.getpid(),
                                "model": m.name if m else None,
                                "version": m.version if m else None,
                                **(rt.contract(m).health() if m else {"forecast_table": None})}
        if rt.router.table is not None:
            info["deployment"] = rt.router.table.describe()
        if rt.shadows is not None:
            info["shadows"] = rt.shadows.status()
        if plog is not None:
            info["prediction_log"] = {"dir": str(plog.dir), **plog.counts(),
                                      "recovered_losses": sum(x["lost"]
                                                              for x in plog.recovered)}
        ok, why = rt.readiness()
        if not ok:
            return JSONResponse({**info, "status": why}, status_code=503)
        return JSONResponse(info)

    @app.get("/metrics", tags=[PROBE])
    async def metrics() -> Response:
        METRICS.ready.set(1 if rt.readiness()[0] else 0)
        if plog is not None:
            c = plog.counts()
            METRICS.log_queue.set(c["queue"])
            for outcome in ("written", "dropped", "rejected", "truncated_bodies"):
                METRICS.log_records.labels(outcome).set(c[outcome])
            METRICS.log_write_errors.set(c["write_errors"])
            METRICS.log_set_aside.set(c["set_aside"])
            METRICS.log_held_bytes.set(c["queued_bytes"])
        body, ctype = metrics_text()
        return Response(body, media_type=ctype)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        raw, _ = await read_checked(request, rt.guard, s.max_body_bytes, JSON)
        rows, single = _rows_of(_parse_json(raw), s.max_batch_rows)
        got = await rt.score(request, rows, "/predict", raw, "application/json")
        model = got.model  # one version answers the whole request
        preds = got.contract.answer_rows(got.outputs)
        ctx = context_of(request)
        out: dict[str, Any] = {"model": model.name, "version": model.version,
                               "request_id": ctx.request_id, "predictions": preds}
        if single:
            out["prediction"] = preds[0]
        out["latency_ms"] = round((time.perf_counter() - ctx.t0) * 1000, 3)
        return Response(orjson.dumps(out), media_type="application/json")

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        """Actuals (``actual``) or rewards (``reward``) by request id or by keys + date."""
        if plog is None:
            raise UnavailableError("feedback is stored in the prediction log, which is off "
                                   "(serving.log.enabled: false)")
        raw, _ = await read_checked(request, rt.guard, s.max_body_bytes, JSON, token=True)
        body = _parse_json(raw)
        items = body.get("feedback") if isinstance(body, dict) and "feedback" in body \
            else body
        if items is not body and len(body) > 1:
            raise RequestError("body: give 'feedback' alone (a list of items), or one item, "
                               "or a list of items")
        items = items if isinstance(items, list) else [items]
        if not items or len(items) > s.max_batch_rows:
            raise RequestError(f"feedback: expected 1 to {s.max_batch_rows} items, got "
                               f"{len(items)}", status=413 if items else 422)
        rows = await run_in_threadpool(check_feedback, rt, items)
        n = await run_in_threadpool(plog.add_feedback, rows)
        return JSONResponse({"accepted": n})

    @app.get("/", response_class=HTMLResponse)
    async def form(request: Request) -> HTMLResponse:
        """The model's web form; with fields in the query, also its answer (the same
        path as every protocol, logged)."""
        m = holder.model

        async def score(records: list[Any]) -> np.ndarray:
            try:
                return (await rt.score(request, records, "/")).outputs
            except RequestError as exc:  # the page shows it: counted here
                rt.refused("/", exc)
                raise

        text, status = await rt.contract(m).form(request.query_params, score)
        return HTMLResponse(text, status_code=status)

    from cd4ml.serving.mlflow_protocol import mlflow_router
    from cd4ml.serving.v2 import v2_router

    routers = [v2_router(rt, s.max_batch_rows, s.max_body_bytes),
               mlflow_router(rt, s.max_batch_rows, s.max_body_bytes)]
    for router in routers:
        app.include_router(router)
    app.openapi_schema = None
    install_spec(app, holder, rt.contract, s, feedback_token=feedback_token is not None,
                 log=plog is not None)
    # the app's own routes and those of the routers it includes (FastAPI keeps an
    # included router as one entry of app.router.routes; its routes are the router's)
    table = RouteTable.of([*app.router.routes, *(r for x in routers for r in x.routes)])
    return OpsMiddleware(app, routes=table,
                         max_body_bytes=s.max_body_bytes, max_concurrency=s.max_concurrency,
                         timeout_s=s.request_timeout_s, access_log_on=s.access_log,
                         on_error=_cd4ml_error)
