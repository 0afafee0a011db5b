"""The HTTP app: a "Sales forecast" web form at ``/`` and JSON at ``POST /predict``.

Requests are checked against the model's signature before the model sees them; bad
input gets a 4xx naming the field and the problem. The model is held by a
:class:`ModelHolder`, the seam through which later work swaps versions while serving.
"""

from __future__ import annotations

import html
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cd4ml.errors import Cd4mlError, MissingExtraError, RequestError, http_status
from cd4ml.registry.servable import ServableModel
from cd4ml.serving.limits import read_body

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("cd4ml serve", "serve", "fastapi") from _exc

__all__ = ["ModelHolder", "create_app", "serve"]


class ModelHolder:
    """The version being served; replaced atomically (a reference swap)."""

    def __init__(self, model: ServableModel) -> None:
        self._model = model
        self._lock = threading.Lock()

    @property
    def model(self) -> ServableModel:
        return self._model

    def swap(self, model: ServableModel) -> None:
        with self._lock:
            self._model = model


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


def create_app(holder: ModelHolder, *, max_batch_rows: int = 10_000,
               max_body_bytes: int = 10_000_000) -> FastAPI:
    app = FastAPI(title="cd4ml model server", version="1")

    @app.exception_handler(Cd4mlError)
    async def _cd4ml_error(request: Request, exc: Cd4mlError) -> JSONResponse:
        errors = getattr(exc, "errors", None) or []
        return JSONResponse({"detail": str(exc), "errors": errors},
                            status_code=http_status(exc))

    @app.middleware("http")
    async def _body_limit(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            msg = (f"body of {size} bytes is larger than the limit of {max_body_bytes} "
                   f"(serving.max_body_bytes)")
            key = "error" if request.url.path.startswith("/v2") else "detail"
            return JSONResponse({key: msg}, status_code=413)
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, Any]:
        m = holder.model
        return {"status": "ok", "model": m.name, "version": m.version}

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/ForecastRow"},
            {"type": "array", "items": {"$ref": "#/components/schemas/ForecastRow"}}]}}}}})
    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        raw = await read_body(request, max_body_bytes)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"body is not valid JSON: {exc}",
                               errors=[{"loc": "body", "problem": str(exc)}]) from None
        rows, single = _rows_of(body, max_batch_rows)
        model = holder.model  # one version answers the whole request
        preds = model.predict_records(rows).tolist()
        out: dict[str, Any] = {"model": model.name, "version": model.version,
                               "request_id": rid, "predictions": preds}
        if single:
            out["prediction"] = preds[0]
        out["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return JSONResponse(out, headers={"x-request-id": rid})

    @app.get("/", response_class=HTMLResponse)
    def form(store: str | None = None, dept: str | None = None,
             date: str | None = None) -> HTMLResponse:
        m = holder.model
        result, status = "", 200
        if store or dept or date:
            fields = list(m.fields)
            rec = dict(zip(fields, [_num(store), _num(dept), date], strict=False))
            try:
                value = float(m.predict_records([rec])[0])
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

    app.include_router(v2_router(lambda: holder.model, max_batch_rows, max_body_bytes))
    app.include_router(mlflow_router(lambda: holder.model, max_batch_rows, max_body_bytes))
    app.openapi_schema = None
    _add_schema(app)
    return app


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


def serve(project_dir: str | Path = ".", *, overrides: list[str] | None = None,
          port: int | None = None, host: str | None = None) -> None:
    """Load the model holding the serving alias and serve it with uvicorn."""
    import uvicorn

    from cd4ml.config import load_config
    from cd4ml.registry.loader import load_version
    from cd4ml.store import open_stores

    root = Path(project_dir).resolve()
    cfg, _ = load_config(root, overrides)
    with open_stores(cfg.store, root) as stores:
        model = load_version(stores.metadata, stores.artifacts, cfg.models.name,
                             cfg.serving.alias)
    app = create_app(ModelHolder(model), max_batch_rows=cfg.serving.max_batch_rows,
                     max_body_bytes=cfg.serving.max_body_bytes)
    uvicorn.run(app, host=host or cfg.serving.host, port=port or cfg.serving.port,
                log_level="info")
