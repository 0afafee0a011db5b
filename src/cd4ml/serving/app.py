"""The HTTP app: a "Sales forecast" web form at ``/`` and JSON at ``POST /predict``.

Every protocol (native JSON, Open Inference Protocol v2, MLflow's ``/invocations``)
goes through :meth:`Runtime.score`: the request's rows are checked against the model's
signature, their precomputed feature rows are looked up, the model is called once,
and the prediction is handed to the prediction log. Around them: ``POST /feedback``
(actuals and rewards), ``/ready``, ``/live``, ``/health``, ``/metrics``, and the
middleware of :mod:`cd4ml.serving.ops` (request ids, limits, metrics, access log).

``cd4ml serve`` builds the app in each worker with :func:`app_from_env`: the model is
loaded in the background (readiness is false until then), and a watcher follows the
serving alias to swap versions while serving (:mod:`cd4ml.serving.hotswap`).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.config import ServingConfig
from cd4ml.errors import (Cd4mlError, MissingExtraError, NotFoundError, RequestError,
                          UnavailableError, http_status)
from cd4ml.registry.servable import ServableModel
from cd4ml.serving.hotswap import ModelHolder, ModelWatcher
from cd4ml.serving.limits import read_body
from cd4ml.serving.predlog import LogRecord, PredictionLog, find_request

try:
    import orjson
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import HTMLResponse, JSONResponse

    from cd4ml.serving.ops import METRICS, OpsMiddleware, error_body, log_config, metrics_text
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("cd4ml serve", "serve", _exc.name or "fastapi") from _exc

__all__ = ["ModelHolder", "Runtime", "create_app", "app_from_env", "serve"]

log = logging.getLogger("cd4ml.serve")

class Runtime:
    """What the routes share: the model holder, the prediction log, the settings."""

    def __init__(self, holder: ModelHolder, settings: ServingConfig,
                 plog: PredictionLog | None = None, watcher: ModelWatcher | None = None,
                 draining: threading.Event | None = None) -> None:
        self.holder, self.settings, self.plog, self.watcher = holder, settings, plog, watcher
        #: set on SIGTERM/SIGINT (and at shutdown): readiness turns false before it stops
        self.draining = draining or threading.Event()
        self._counters: dict[tuple[str, int | None, str], Any] = {}
        holder.listeners.append(self._on_swap)
        if holder.current is not None:
            self._on_swap(None, holder.current)

    @staticmethod
    def _on_swap(old: ServableModel | None, new: ServableModel) -> None:
        if old is not None:
            METRICS.model_info.labels(old.name, str(old.version)).set(0)
            METRICS.swaps.inc()
        METRICS.model_info.labels(new.name, str(new.version)).set(1)

    def readiness(self) -> tuple[bool, str]:
        if self.draining.is_set():
            return False, "draining: the server is shutting down"
        if self.holder.current is None:
            why = f"; last error: {self.watcher.last_error}" if self.watcher and \
                self.watcher.last_error else ""
            return False, f"loading the model{why}"
        return True, "ready"

    #: from this many rows on, the model runs in a thread (LightGBM releases the GIL),
    #: so one worker uses both cores and keeps answering small requests meanwhile
    THREAD_ROWS = 64

    async def score(self, request: Request, model: ServableModel, records: list[Any],
                    endpoint: str, raw: bytes = b"", content_type: str = "") -> np.ndarray:
        """Validate, look up features, predict once, log; the one path of every protocol."""
        rows = model.rows_for(records)
        X = model.X[rows]
        if len(rows) >= self.THREAD_ROWS:
            from starlette.concurrency import run_in_threadpool

            preds = await run_in_threadpool(model.predictor.predict, X)
        else:
            preds = model.predictor.predict(X)
        preds = np.asarray(preds, dtype=np.float64)
        state = request.scope["state"]
        state["model_version"] = model.version
        key = (model.name, model.version, endpoint)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = METRICS.predictions.labels(
                model.name, str(model.version), endpoint)
        counter.inc(len(preds))
        if self.plog is not None:
            t0 = state.get("t0")
            self.plog.append(LogRecord(
                request_id=state.get("request_id", ""), ts=time.time(), model=model.name,
                version=model.version, endpoint=endpoint,
                latency_ms=(time.perf_counter() - t0) * 1000 if t0 else 0.0,
                records=records, features=X,
                feature_names=model.predictor.feature_names, outputs=preds,
                content_type=content_type, request=raw))
        return preds


def _rows_of(body: Any, limit: int) -> tuple[list[Any], bool]:
    """Request rows and whether the body was a single object."""
    if isinstance(body, dict) and "rows" in body:
        rows = body["rows"]
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
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}",
                           errors=[{"loc": "body", "problem": str(exc)}]) from None


def create_app(holder: ModelHolder, *, settings: ServingConfig | None = None,
               plog: PredictionLog | None = None, watcher: ModelWatcher | None = None,
               max_batch_rows: int | None = None, max_body_bytes: int | None = None,
               startup_wait_s: float = 0,
               draining: threading.Event | None = None) -> Any:
    """The ASGI app (FastAPI inside :class:`OpsMiddleware`).

    With ``startup_wait_s`` the app's startup waits (that long at most) for the first
    model before the server accepts connections; ``cd4ml serve --workers N`` uses it, so
    that the shared socket never hands a request to a worker that is still loading.
    With one worker the port opens at once and ``/ready`` says 503 until the model is in.
    """
    s = settings or ServingConfig()
    upd = {k: v for k, v in (("max_batch_rows", max_batch_rows),
                             ("max_body_bytes", max_body_bytes)) if v is not None}
    if upd:
        s = s.model_copy(update=upd)
    rt = Runtime(holder, s, plog, watcher, draining)

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
        request.scope["state"]["error_type"] = type(exc).__name__
        status = http_status(exc)
        headers = {"retry-after": "1"} if status == 503 else None
        body = error_body(request.url.path, str(exc), "BAD_REQUEST" if status < 500 else
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

    @app.get("/live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        m = holder.current
        return ready_response({"ready": True, "model": m.name if m else None,
                               "version": m.version if m else None})

    @app.get("/health")
    async def health() -> JSONResponse:
        m = holder.current
        info: dict[str, Any] = {"status": "ok", "model": m.name if m else None,
                                "version": m.version if m else None}
        if plog is not None:
            info["prediction_log"] = {"dir": str(plog.dir), "queue": plog.queue_depth,
                                      "written": plog.written, "dropped": plog.dropped,
                                      "recovered_losses": sum(x["lost"]
                                                              for x in plog.recovered)}
        ok, why = rt.readiness()
        if not ok:
            return JSONResponse({**info, "status": why}, status_code=503)
        return JSONResponse(info)

    @app.get("/metrics")
    async def metrics() -> Response:
        METRICS.ready.set(1 if rt.readiness()[0] else 0)
        if plog is not None:
            METRICS.log_queue.set(plog.queue_depth)
        body, ctype = metrics_text()
        return Response(body, media_type=ctype)

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/ForecastRow"},
            {"type": "array", "items": {"$ref": "#/components/schemas/ForecastRow"}}]}}}}})
    async def predict(request: Request) -> JSONResponse:
        raw = await read_body(request, s.max_body_bytes)
        rows, single = _rows_of(_parse_json(raw), s.max_batch_rows)
        model = holder.model  # one version answers the whole request
        preds = (await rt.score(request, model, rows, "/predict", raw,
                                "application/json")).tolist()
        state = request.scope["state"]
        out: dict[str, Any] = {"model": model.name, "version": model.version,
                               "request_id": state["request_id"], "predictions": preds}
        if single:
            out["prediction"] = preds[0]
        out["latency_ms"] = round((time.perf_counter() - state["t0"]) * 1000, 3)
        return Response(orjson.dumps(out), media_type="application/json")

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        """Actuals (``actual``) or rewards (``reward``) by request id or by keys + date."""
        if plog is None:
            raise UnavailableError("feedback is stored in the prediction log, which is off "
                                   "(serving.log.enabled: false)")
        raw = await read_body(request, s.max_body_bytes)
        body = _parse_json(raw)
        items = body.get("feedback") if isinstance(body, dict) and "feedback" in body \
            else body
        items = items if isinstance(items, list) else [items]
        if not items or len(items) > s.max_batch_rows:
            raise RequestError(f"feedback: expected 1 to {s.max_batch_rows} items, got "
                               f"{len(items)}", status=413 if items else 422)
        from starlette.concurrency import run_in_threadpool

        rows = await run_in_threadpool(_check_feedback, rt, items)
        n = await run_in_threadpool(plog.add_feedback, rows)
        return JSONResponse({"accepted": n})

    @app.get("/", response_class=HTMLResponse)
    async def form(request: Request, store: str | None = None, dept: str | None = None,
                   date: str | None = None) -> HTMLResponse:
        m = holder.model
        result, status = "", 200
        if store or dept or date:
            fields = list(m.fields)
            rec = dict(zip(fields, [_num(store), _num(dept), date], strict=False))
            try:  # the form's forecasts are predictions too: the same path, logged
                value = float((await rt.score(request, m, [rec], "/"))[0])
                result = (f'<p class="result">Forecast of weekly sales for store '
                          f'{html.escape(str(store))}, department {html.escape(str(dept))}, '
                          f'week of {html.escape(str(date))}: <b id="forecast">'
                          f'${value:,.2f}</b></p>')
            except RequestError as exc:
                result = f'<p class="error" id="error">{html.escape(str(exc))}</p>'
                status = 422
        return HTMLResponse(_page(m, store, dept, date, result), status_code=status)

    from cd4ml.serving.mlflow_protocol import mlflow_router
    from cd4ml.serving.v2 import v2_router

    routers = [v2_router(rt, s.max_batch_rows, s.max_body_bytes),
               mlflow_router(rt, s.max_batch_rows, s.max_body_bytes)]
    for router in routers:
        app.include_router(router)
    app.openapi_schema = None
    _add_schema(app)
    outer = OpsMiddleware(app, max_body_bytes=s.max_body_bytes,
                          max_concurrency=s.max_concurrency, timeout_s=s.request_timeout_s,
                          access_log_on=s.access_log,
                          fast=_fast_dispatch([*app.router.routes,
                                               *(r for x in routers for r in x.routes)],
                                              _cd4ml_error))
    return outer


_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def _fast_dispatch(routes: list[Any], on_error: Any) -> Any:
    """Call the prediction endpoints directly, past FastAPI's routing and middleware stack.

    The same endpoint functions FastAPI routes to (and documents in /openapi.json); this
    only skips the generic layers, which cost about a fifth of a single-row request.
    """
    hot = {r.path: r.endpoint for r in routes
           if getattr(r, "methods", None) and "POST" in r.methods and r.path in (
               "/predict", "/invocations", "/v2/models/{name}/infer",
               "/v2/models/{name}/versions/{version}/infer")}

    async def fast(scope: Any, receive: Any, send: Any) -> bool:
        if scope["method"] != "POST":
            return False
        path = scope["path"]
        kw: dict[str, Any] = {}
        if path in ("/predict", "/invocations"):
            fn = hot[path]
        else:
            m = _V2_INFER.match(path)
            if m is None:
                return False
            name, version = m.group(1), m.group(2)
            if version is None:
                fn, kw = hot["/v2/models/{name}/infer"], {"name": name}
            else:
                fn, kw = hot["/v2/models/{name}/versions/{version}/infer"], {
                    "name": name, "version": version}
        request = Request(scope, receive)
        try:
            response = await fn(request=request, **kw)
        except Cd4mlError as exc:
            response = await on_error(request, exc)
        await response(scope, receive, send)
        return True

    return fast


def _is_finite_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _finite(item: dict[str, Any], key: str, loc: str, errors: list[dict[str, Any]]) -> Any:
    v = item.get(key)
    if v is None:
        return None
    if not _is_finite_number(v):
        errors.append({"loc": f"{loc}.{key}", "field": key, "value": repr(v)[:80],
                       "problem": "expected a finite number"})
        return None
    return float(v)


def _check_feedback(rt: Runtime, items: list[Any]) -> list[dict[str, Any]]:
    """Validate feedback items; unknown request ids give 404, other problems 422."""
    plog = rt.plog
    assert plog is not None  # /feedback answers 503 without a log
    out: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    unknown: list[str] = []
    flushed = False
    for i, it in enumerate(items):
        loc = f"feedback[{i}]"
        if not isinstance(it, dict):
            errors.append({"loc": loc, "field": None, "value": repr(it)[:80],
                           "problem": "expected an object"})
            continue
        actual, reward = _finite(it, "actual", loc, errors), _finite(it, "reward", loc, errors)
        actuals = it.get("actuals")
        if actuals is not None and (not isinstance(actuals, list) or
                                    not all(map(_is_finite_number, actuals))):
            errors.append({"loc": f"{loc}.actuals", "field": "actuals",
                           "value": repr(actuals)[:80],
                           "problem": "expected a list of finite numbers"})
            continue
        if actual is None and reward is None and actuals is None:
            if not any(e["loc"].startswith(loc) for e in errors):
                errors.append({"loc": loc, "field": "actual", "value": None,
                               "problem": "give 'actual' (or 'actuals') and/or 'reward'"})
            continue
        rid = it.get("request_id")
        if rid is not None:
            extra = sorted(set(it) - {"request_id", "row", "actual", "actuals", "reward"})
            if extra:
                errors.append({"loc": f"{loc}.{extra[0]}", "field": extra[0],
                               "value": repr(it[extra[0]])[:80],
                               "problem": "unknown field; with request_id give row, actual, "
                                          "actuals, reward"})
                continue
            found = find_request(plog.dir, str(rid))
            if found is None and not flushed:
                plog.flush()  # it may still wait in this worker's queue
                flushed = True
                found = find_request(plog.dir, str(rid))
            if found is None:
                unknown.append(str(rid))
                continue
            n = found["n_rows"]
            if actuals is not None:
                if len(actuals) != n:
                    errors.append({"loc": f"{loc}.actuals", "field": "actuals",
                                   "value": len(actuals),
                                   "problem": f"request {rid} had {n} rows; give {n} actuals"})
                    continue
                out += [{"request_id": str(rid), "row": j, "actual": float(a),
                         "reward": reward} for j, a in enumerate(actuals)]
                continue
            row = it.get("row", 0 if n == 1 else None)
            if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < n:
                errors.append({"loc": f"{loc}.row", "field": "row", "value": row,
                               "problem": f"request {rid} had {n} rows: give 'row' from 0 to "
                                          f"{n - 1}, or 'actuals' with {n} values"})
                continue
            out.append({"request_id": str(rid), "row": row, "actual": actual,
                        "reward": reward})
        else:
            model = rt.holder.model
            keys = {k.lower(): v for k, v in it.items()
                    if k not in ("actual", "reward", "actuals")}
            try:
                model.rows_for([keys])
            except RequestError as exc:
                for e in exc.errors:
                    errors.append({**e, "loc": e["loc"].replace("rows[0]", loc)})
                continue
            out.append({"keys": keys, "actual": actual, "reward": reward})
    if errors:
        first = errors[0]
        raise RequestError(f"{first['loc']}: {first['problem']}"
                           + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                           errors=errors)
    if unknown:
        raise NotFoundError(f"request_id {unknown[0]!r} is not in the prediction log"
                            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                            + "; it may be older than serving.log.retention_days or made "
                              "by another server")
    return out


def _num(v: str | None) -> Any:
    if v is None:
        return None
    try:
        f = float(v)
        return int(f) if f.is_integer() else f
    except ValueError:
        return v


def _page(m: ServableModel, store: Any, dept: Any, date: Any, result: str) -> str:
    keys = sorted(m.series_index)
    stores = sorted({k[0] for k in keys})
    depts = sorted({k[1] for k in keys}) if len(keys[0]) > 1 else []

    def options(vals: list[Any], cur: Any) -> str:
        return "".join(f'<option value="{_txt(v)}"{" selected" if _txt(v) == cur else ""}>'
                       f"{_txt(v)}</option>" for v in vals)

    last = m.last.date()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Sales forecast</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}label{{display:block;
margin:.6em 0}}.result{{font-size:1.3em}}.error{{color:#b00}}</style></head><body>
<h1>Sales forecast</h1>
<p>Model <b>{html.escape(m.name)}</b> version <b>{m.version}</b>; history ends
{m.history_end.date()}, forecasts up to {last}.</p>
<form method="get" action="/">
<label>Date <input type="date" name="date" value="{html.escape(str(date or last))}"
 min="{m.start.date()}" max="{last}" step="{m.step.days}"></label>
<label>Store <select name="store">{options(stores, store)}</select></label>
<label>Department <select name="dept">{options(depts, dept)}</select></label>
<button type="submit">Forecast</button></form>{result}</body></html>"""


def _txt(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _add_schema(app: FastAPI) -> None:
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        schema.setdefault("components", {}).setdefault("schemas", {})["ForecastRow"] = {
            "type": "object", "required": ["store", "dept", "date"],
            "properties": {"store": {"type": "integer"}, "dept": {"type": "integer"},
                           "date": {"type": "string", "format": "date"}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- the server process ---------------------------------------------------------------
_ENV = "CD4ML_SERVE"


def _install_drain(drain_s: float, draining: threading.Event) -> None:
    """On the first SIGTERM/SIGINT: readiness false, keep serving ``drain_s``, then stop."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if not callable(prev):
            continue

        def handler(signum: int, frame: Any, prev: Any = prev) -> None:
            if draining.is_set() or drain_s <= 0:
                draining.set()
                prev(signum, frame)
                return
            draining.set()
            log.info("draining for %.1f s before stopping (readiness is false)", drain_s,
                     extra={"event": "draining"})
            t = threading.Timer(drain_s, prev, args=(signum, None))
            t.daemon = True
            t.start()

        signal.signal(sig, handler)


def app_from_env() -> Any:
    """The app factory each worker runs (``cd4ml serve`` passes its settings by env)."""
    from cd4ml.config import load_config
    from cd4ml.registry.loader import load_version
    from cd4ml.store import open_stores

    opts = json.loads(os.environ[_ENV])
    root = Path(opts["project_dir"])
    cfg, _ = load_config(root, opts.get("overrides") or [])
    s = cfg.serving
    plog = None
    if s.log.enabled:
        d = Path(s.log.dir)
        plog = PredictionLog(d if d.is_absolute() else root / d,
                             flush_interval_ms=s.log.flush_interval_ms,
                             max_unflushed=s.log.max_unflushed,
                             rotate_hours=s.log.rotate_hours,
                             retention_days=s.log.retention_days,
                             store_request=s.log.store_request)
        lost = sum(x["lost"] for x in plog.recovered)
        if lost:
            METRICS.log_lost.inc(lost)
    stores_box: dict[str, Any] = {}

    def stores() -> Any:
        if "s" not in stores_box:
            stores_box["s"] = open_stores(cfg.store, root)
        return stores_box["s"]

    def resolve() -> dict[str, Any]:
        r = stores().metadata.resolve(cfg.models.name, s.alias)
        return {"version": r["version"], "digest": r["digest"]}

    def load(row: dict[str, Any]) -> ServableModel:
        st = stores()
        return load_version(st.metadata, st.artifacts, cfg.models.name, row["version"])

    holder = ModelHolder()
    watcher = ModelWatcher(holder, resolve=resolve, load=load, interval_s=s.poll_interval_s,
                           on_load_error=lambda exc: METRICS.load_failures.inc())
    draining = threading.Event()
    _install_drain(s.drain_s, draining)
    # the log's writer thread gives the GIL back to the event loop within 1 ms (default
    # 5 ms), which keeps its flushes out of request latency
    sys.setswitchinterval(0.001)
    METRICS.ready.set(0)
    workers = int(opts.get("workers") or s.workers)
    return create_app(holder, settings=s, plog=plog, watcher=watcher,
                      startup_wait_s=600 if workers > 1 else 0, draining=draining)


def serve(project_dir: str | Path = ".", *, overrides: list[str] | None = None,
          port: int | None = None, host: str | None = None, workers: int | None = None) -> None:
    """Serve the model holding the serving alias with uvicorn (``workers`` processes)."""
    import shutil
    import tempfile

    import uvicorn

    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    root = Path(project_dir).resolve()
    cfg, _ = load_config(root, overrides)
    with open_stores(cfg.store, root) as stores:  # fail now, in one line, if nothing serves
        stores.metadata.resolve(cfg.models.name, cfg.serving.alias)
    n = workers or cfg.serving.workers
    os.environ[_ENV] = json.dumps({"project_dir": str(root), "overrides": list(overrides or []),
                                   "workers": n})
    prom_dir = None
    if n > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prom_dir = tempfile.mkdtemp(prefix="cd4ml-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    try:
        uvicorn.run("cd4ml.serving.app:app_from_env", factory=True,
                    host=host or cfg.serving.host, port=port or cfg.serving.port, workers=n,
                    log_config=log_config(), access_log=False, lifespan="on")
    finally:
        if prom_dir:
            shutil.rmtree(prom_dir, ignore_errors=True)
