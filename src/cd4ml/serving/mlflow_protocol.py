"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``.

Accepts what MLflow clients send: JSON with ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (optional ``params``), and ``text/csv``; answers
``{"predictions": [...]}``. Other content types get 415.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cd4ml import __version__
from cd4ml.errors import RequestError
from cd4ml.serving.limits import read_body

__all__ = ["mlflow_router", "records_from_json", "records_from_csv"]

_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _columns_to_records(cols: dict[str, Any]) -> list[dict[str, Any]]:
    lens = {k: len(v) if isinstance(v, list) else 1 for k, v in cols.items()}
    n = max(lens.values()) if lens else 0
    if len(set(lens.values())) > 1:
        raise RequestError(f"columns hold different numbers of values: {lens}")
    return [{k: (v[i] if isinstance(v, list) else v) for k, v in cols.items()}
            for i in range(n)]


def records_from_json(doc: Any) -> list[Any]:
    """Rows from any of MLflow's JSON input formats."""
    if not isinstance(doc, dict):
        raise RequestError(f"expected a JSON object with one of {list(_KEYS)}")
    found = [k for k in _KEYS if k in doc]
    extra = sorted(set(doc) - {*_KEYS, "params"})
    if len(found) != 1 or extra:
        raise RequestError(f"the body needs exactly one of {list(_KEYS)} (plus optional "
                           f"'params'); got keys {sorted(doc)}")
    key, body = found[0], doc[found[0]]
    if key == "dataframe_split":
        if not isinstance(body, dict) or "columns" not in body or "data" not in body:
            raise RequestError("dataframe_split needs 'columns' and 'data' "
                               "(pandas.DataFrame.to_dict(orient='split'))")
        cols = body["columns"]
        rows = body["data"]
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) != len(cols)
                                              for r in rows):
            raise RequestError(f"dataframe_split.data must be rows of {len(cols)} values")
        return [dict(zip(cols, r, strict=True)) for r in rows]
    if key == "dataframe_records":
        if not isinstance(body, list):
            raise RequestError("dataframe_records must be a list of objects")
        return body
    if isinstance(body, dict):  # instances / inputs as columns
        return _columns_to_records(body)
    if isinstance(body, list):
        return body
    raise RequestError(f"{key} must be a list of rows or an object of columns")


def _number(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def records_from_csv(text: str, numeric: set[str]) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: (_number(v) if k.lower() in numeric and v is not None else v)
             for k, v in r.items()} for r in rows]


def mlflow_router(rt: Any, max_rows: int, max_bytes: int) -> APIRouter:
    """Routes of the protocol; ``rt`` is the app's :class:`~cd4ml.serving.app.Runtime`."""
    r = APIRouter(tags=["mlflow"])  # the tag gives its errors MLflow's shape (routes.py)

    @r.get("/ping")
    async def ping() -> Response:
        ok, why = rt.readiness()
        if ok:
            return Response("\n", media_type="application/json")
        return JSONResponse({"error_code": "TEMPORARILY_UNAVAILABLE", "message": why},
                            status_code=503)

    @r.get("/version")
    async def version() -> Response:
        return Response(__version__, media_type="text/plain")

    @r.post("/invocations")
    async def invocations(request: Request) -> Response:
        m = rt.holder.model
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        raw = await read_body(request, max_bytes)
        if ctype == "application/json":
            try:
                doc = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(f"body is not valid JSON: {exc}") from None
            records = records_from_json(doc)
        elif ctype == "text/csv":
            numeric = {f for f, num in m.numeric.items() if num}
            records = records_from_csv(raw.decode("utf-8", errors="replace"), numeric)
        else:
            return JSONResponse(
                {"error_code": "BAD_REQUEST",
                 "message": f"content type {ctype or '(none)'!r} is not supported; use "
                            f"application/json or text/csv"}, status_code=415)
        if not records:
            raise RequestError("no rows to score")
        if len(records) > max_rows:
            raise RequestError(f"{len(records)} rows is more than the limit of {max_rows} "
                               f"per request (serving.max_batch_rows)", status=413)
        preds = await rt.score(request, m, records, "/invocations", raw, ctype)
        return JSONResponse({"predictions": preds.tolist()})

    return r
