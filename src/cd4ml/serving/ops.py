"""What operators need around the protocols: ids, limits, metrics, logs.

:class:`OpsMiddleware` is plain ASGI (no per-request task or BaseHTTPMiddleware
overhead). For every request it:

- honours a client's ``X-Request-ID`` (up to 128 characters of ``[A-Za-z0-9._:-]``;
  anything else is replaced) or makes one, and echoes it on every response;
- refuses a declared body over ``serving.max_body_bytes`` with 413 before reading it;
- answers 503 with ``Retry-After`` when ``serving.max_concurrency`` requests are in
  flight in this worker (probes — health, readiness, metrics — take no slot and are
  never refused: a busy worker is not a dead one), and 504 when a request takes longer than
  ``serving.request_timeout_s`` (counted from when the app starts on it, so it bounds
  slow uploads and waits, not a model call that is already running);
- counts requests, latency, errors by type in Prometheus metrics, and writes one JSON
  access-log line.

Metrics work in one process or in several (``cd4ml serve --workers N``): the server
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start and ``/metrics`` merges the
workers' files (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Gauge, Histogram, generate_latest)

from cd4ml.errors import Cd4mlError
from cd4ml.predlog.segments import new_request_id
from cd4ml.serving.routes import CONTEXT_KEY, RequestContext, RouteTable, error_body

__all__ = ["OpsMiddleware", "METRICS", "metrics_text", "log_config", "JsonLines"]

access_log = logging.getLogger("cd4ml.access")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0)


class _Metrics:
    def __init__(self) -> None:
        self.requests = Counter("cd4ml_http_requests", "HTTP requests answered",
                                ["endpoint", "method", "status"])
        self.latency = Histogram("cd4ml_http_request_duration_seconds",
                                 "Time from the app receiving a request to its answer",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS)
        self.errors = Counter("cd4ml_http_errors", "Requests answered with an error, by type",
                              ["endpoint", "type"])
        self.in_flight = Gauge("cd4ml_http_requests_in_flight", "Requests being handled",
                               multiprocess_mode="livesum")
        self.predictions = Counter("cd4ml_predictions", "Rows predicted",
                                   ["model", "version", "endpoint"])
        self.refusals = Counter("cd4ml_request_refusals",
                                "Requests refused as invalid (4xx), once per field and "
                                "reason they broke; field (other): not a field of the "
                                "model's signature, or not about one field",
                                ["endpoint", "field", "reason"])
        self.log_queue = Gauge("cd4ml_prediction_log_queue_depth",
                               "Prediction-log records waiting for the writer",
                               multiprocess_mode="livesum")
        self.log_held_bytes = Gauge("cd4ml_prediction_log_queued_bytes",
                                    "Bytes of prediction-log records not yet on disk",
                                    multiprocess_mode="livesum")
        self.log_records = Gauge("cd4ml_prediction_log_records",
                                 "Prediction-log records by outcome since the worker started "
                                 "(written, dropped, rejected, truncated_bodies)", ["outcome"],
                                 multiprocess_mode="livesum")
        self.log_write_errors = Gauge("cd4ml_prediction_log_write_errors",
                                      "Prediction-log flushes or blocks that failed to store",
                                      multiprocess_mode="livesum")
        self.log_set_aside = Gauge("cd4ml_prediction_log_set_aside_files",
                                   "Damaged files the log set aside (renamed) at start or "
                                   "when met", multiprocess_mode="livesum")
        self.log_lost = Counter("cd4ml_prediction_log_records_lost",
                                "Prediction-log records accepted but never written "
                                "(found after a crash, or dropped by a failing writer)")
        self.model_info = Gauge("cd4ml_model_loaded", "1 for the version this worker serves",
                                ["model", "version"], multiprocess_mode="livemax")
        self.swaps = Counter("cd4ml_model_swaps", "Model versions swapped in while serving")
        self.load_failures = Counter("cd4ml_model_load_failures",
                                     "Model versions that failed to load or warm up")
        self.ready = Gauge("cd4ml_ready", "1 when this worker is ready for traffic",
                           multiprocess_mode="livemin")
        # the router (:mod:`cd4ml.serving.router`): which version answered, in which role
        self.routed = Counter("cd4ml_routed_requests",
                              "Requests routed to a version of a deployment, by outcome: ok, "
                              "error (the version raised; the request was answered by the "
                              "incumbent), refused (invalid input)",
                              ["deployment", "version", "role", "outcome"])
        self.routed_latency = Histogram("cd4ml_routed_latency_seconds",
                                        "Time from the request's arrival to its prediction, "
                                        "per version and role",
                                        ["deployment", "version", "role"],
                                        buckets=_LATENCY_BUCKETS)
        self.shadow = Counter("cd4ml_shadow_requests",
                              "Requests copied to a shadow version, by outcome: ok, error, "
                              "dropped (its queue was full)", ["deployment", "version", "outcome"])
        self.deployment_revision = Gauge("cd4ml_deployment_revision",
                                         "The deployment revision this worker routes by",
                                         ["deployment"], multiprocess_mode="livemin")


METRICS = _Metrics()


def metrics_text() -> tuple[bytes, str]:
    """The exposition of every worker (multiprocess mode) or of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_RID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class OpsMiddleware:
    """The app's outer layer (see the module's docstring).

    ``routes`` is the app's route table (:class:`~cd4ml.serving.routes.RouteTable`): the
    metrics' endpoint label and the error shape of each path, and the POST endpoints
    called directly, past FastAPI's generic layers (about a fifth of a single-row
    request), with ``on_error`` answering a :class:`~cd4ml.errors.Cd4mlError` as the
    app's own handler does.
    """

    def __init__(self, app: Any, *, routes: RouteTable, max_body_bytes: int,
                 max_concurrency: int, timeout_s: float, access_log_on: bool = True,
                 on_error: Callable[[Request, Cd4mlError], Awaitable[Any]] | None = None,
                 ) -> None:
        self.app = app
        self.routes, self.on_error = routes, on_error
        self.max_body, self.max_conc, self.timeout = max_body_bytes, max_concurrency, timeout_s
        self.access_log_on = access_log_on
        self.in_flight = 0
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # request timeouts: one watchdog per worker instead of an asyncio.timeout (a timer
        # handle in the loop's heap, made and cancelled) per request, which cost ~4 % of
        # a single-row request; a timeout fires up to ``_tick`` late
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.TimerHandle | None = None
        self._tick = min(0.1, timeout_s / 10)

    def _check_deadlines(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in list(self._deadlines.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._watch = loop.call_later(self._tick, self._check_deadlines) \
            if self._deadlines else None

    async def _reply(self, send: Any, status: int, body: dict[str, Any], rid: bytes,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        raw = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(raw)).encode()),
                                (b"x-request-id", rid), *(extra or [])]})
        await send({"type": "http.response.body", "body": raw})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope["path"]
        route, path_params = self.routes.find(scope)
        protocol = route.protocol
        rid_s = clen = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                rid_s = v.decode("latin-1")
            elif k == b"content-length":
                clen = v
        if rid_s is None or not _RID.match(rid_s):
            # time-ordered (ms clock, then random, like UUIDv7): the prediction log finds
            # it by time and needs no index entry for it
            rid_s = new_request_id()
        rid = rid_s.encode()
        ctx = scope[CONTEXT_KEY] = RequestContext(rid_s, t0, protocol, endpoint=route.label)
        status = 0

        async def send_with_id(msg: Any) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg["headers"] = [*msg.get("headers", ()), (b"x-request-id", rid)]
            await send(msg)

        err_type = None
        if clen is not None and clen.isdigit() and int(clen) > self.max_body:
            status, err_type = 413, "body_too_large"
            await self._reply(send, 413, error_body(protocol, (
                f"body of {int(clen)} bytes is larger than the limit of {self.max_body} "
                f"(serving.max_body_bytes)"), "INVALID_PARAMETER_VALUE"), rid)
        elif not route.probe and self.in_flight >= self.max_conc:
            status, err_type = 503, "overloaded"
            await self._reply(send, 503, error_body(protocol, (
                f"server busy: {self.in_flight} requests in flight, the limit per worker is "
                f"{self.max_conc} (serving.max_concurrency); retry shortly"),
                "TEMPORARILY_UNAVAILABLE"), rid, [(b"retry-after", b"1")])
        else:
            limited = not route.probe  # a probe takes no slot (routes.PROBE)
            if limited:
                self.in_flight += 1
                METRICS.in_flight.inc()
            task = asyncio.current_task()
            assert task is not None
            loop = asyncio.get_running_loop()
            self._deadlines[task] = loop.time() + self.timeout
            if self._watch is None:
                self._watch = loop.call_later(self._tick, self._check_deadlines)
            try:
                if route.direct is not None:
                    await self._direct(route.direct, path_params, scope, receive,
                                       send_with_id)
                else:
                    await self.app(scope, receive, send_with_id)
            except asyncio.CancelledError:
                if task not in self._expired:  # shutdown or a client gone: not ours
                    raise
                task.uncancel()
                err_type = "timeout"
                if status == 0:
                    status = 504
                    await self._reply(send, 504, error_body(protocol, (
                        f"request took longer than {self.timeout} s "
                        f"(serving.request_timeout_s)"), "DEADLINE_EXCEEDED"), rid)
            except Exception:
                err_type = "internal"
                logging.getLogger("cd4ml.serve").exception(
                    "unhandled error", extra={"request_id": rid_s, "path": path})
                if status == 0:
                    status = 500
                    await self._reply(send, 500, error_body(protocol, (
                        f"internal error (request id {rid_s}); see the server log"),
                        "INTERNAL_ERROR"), rid)
            finally:
                if limited:
                    self.in_flight -= 1
                    METRICS.in_flight.dec()
                del self._deadlines[task]
                self._expired.discard(task)
        dt = time.perf_counter() - t0
        ep = route.label
        key = (ep, scope["method"], status)
        child = self._children.get(key)
        if child is None:  # labels() takes a lock and builds a key: once per label set
            child = self._children[key] = (
                METRICS.requests.labels(ep, scope["method"], str(status)),
                METRICS.latency.labels(ep))
        child[0].inc()
        child[1].observe(dt)
        err_type = err_type or ctx.error_type
        if status >= 400:
            METRICS.errors.labels(ep, err_type or f"http_{status}").inc()
        if self.access_log_on and access_log.isEnabledFor(logging.INFO):
            _access_line(scope["method"], path, status, {
                "request_id": rid_s, "method": scope["method"], "path": path,
                "status": status, "latency_ms": round(dt * 1000, 3),
                "model_version": ctx.model_version,
                "error_type": err_type if status >= 400 else None})

    async def _direct(self, endpoint: Callable[..., Awaitable[Any]],
                      path_params: dict[str, Any], scope: Any, receive: Any,
                      send: Any) -> None:
        """Call a route's endpoint as FastAPI would, without its generic layers."""
        request = Request(scope, receive)
        try:
            response = await endpoint(request=request, **path_params)
        except Cd4mlError as exc:
            if self.on_error is None:
                raise
            response = await self.on_error(request, exc)
        await response(scope, receive, send)


def _access_line(method: str, path: str, status: int, fields: dict[str, Any]) -> None:
    """One access-log record, made with the logger's public ``makeRecord``/``handle``.

    ``Logger.info`` would first walk the stack to find the caller's file and line
    (``findCaller``), which no access line prints; skipping it here, for this one
    logger (not for every logger of the process, as changing the logging module's own
    switch would), saves that walk on every request.
    """
    record = access_log.makeRecord(access_log.name, logging.INFO, "(access)", 0,
                                   "%s %s %d", (method, path, status), None,
                                   extra=fields)
    access_log.handle(record)


#: attributes every LogRecord has; anything else on a record came in ``extra``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, message, then the extras.

    The same fields python-json-logger's ``JsonFormatter`` gave us (with
    ``rename_fields``), encoded with orjson and the time string cached per second: an
    access line costs half of what it did (measured: 34 → 16 µs a line,
    in-process, with the handler writing to memory), about 6 % of a request's CPU at
    single-row rates.
    """

    def __init__(self, datefmt: str = "%Y-%m-%dT%H:%M:%S%z") -> None:
        super().__init__(datefmt=datefmt)
        self._sec = -1
        self._time = ""
        try:
            import orjson

            self._dumps = lambda o: orjson.dumps(o, default=str).decode()
        except ImportError:  # pragma: no cover - orjson comes with the serve extra
            self._dumps = lambda o: json.dumps(o, default=str)

    def format(self, record: logging.LogRecord) -> str:
        sec = int(record.created)
        if sec != self._sec:
            self._sec, self._time = sec, self.formatTime(record, self.datefmt)
        out: dict[str, Any] = {"time": self._time, "level": record.levelname,
                               "logger": record.name, "pid": record.process,
                               "message": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in _RECORD_ATTRS:
                out[k] = v
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return self._dumps(out)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """logging.dictConfig for JSON lines on stderr (ours and uvicorn's)."""
    fmt = {"()": "cd4ml.serving.ops.JsonLines"}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"json": fmt},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                    "stream": "ext://sys.stderr"}},
            "loggers": {"cd4ml": {"handlers": ["stderr"], "level": level,
                                  "propagate": False},
                        "uvicorn": {"handlers": ["stderr"], "level": level,
                                    "propagate": False},
                        "uvicorn.error": {"level": level},
                        "uvicorn.access": {"handlers": [], "level": "WARNING",
                                           "propagate": False}}}
