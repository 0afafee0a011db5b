"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``.

Accepts what MLflow clients send: JSON with ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (optional ``params``), and ``text/csv``; answers
``{"predictions": [...]}`` (a classifier's labels, as MLflow's sklearn flavour answers;
else numbers). Other content types get 415 (:mod:`cd4ml.serving.guard`).
Every malformed body is a 4xx naming the part that is wrong: a CSV row with more or
fewer values than the header, columns that are not a list of names, a column of an
object, a body that is not UTF-8.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cd4ml import __version__
from cd4ml.errors import RequestError, short_repr
from cd4ml.serving.guard import MLFLOW
from cd4ml.serving.jsonbody import json_answer, parse_json
from cd4ml.serving.limits import read_checked
from cd4ml.serving.routes import PROBE

__all__ = ["mlflow_router", "records_from_json", "records_from_csv"]

_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _columns_to_records(key: str, cols: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of an object of columns: each a list of values, or one value (one row)."""
    for k, v in cols.items():
        if isinstance(v, dict):
            raise RequestError(f"{key}.{k}: a column is a list of values (or one value), "
                               f"not an object")
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
    if "params" in doc and not isinstance(doc["params"], dict):
        raise RequestError(f"params must be an object of inference parameters; got "
                           f"{short_repr(doc['params'])}")
    key, body = found[0], doc[found[0]]
    if key == "dataframe_split":
        if not isinstance(body, dict) or "columns" not in body or "data" not in body:
            raise RequestError("dataframe_split needs 'columns' and 'data' "
                               "(pandas.DataFrame.to_dict(orient='split'))")
        cols = body["columns"]
        rows = body["data"]
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise RequestError(f"dataframe_split.columns must be a list of column names "
                               f"(strings); got {short_repr(cols)}")
        if len(set(cols)) != len(cols):
            raise RequestError(f"dataframe_split.columns names a column twice: {short_repr(cols)}")
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) != len(cols)
                                              for r in rows):
            raise RequestError(f"dataframe_split.data must be rows of {len(cols)} values")
        return [dict(zip(cols, r, strict=True)) for r in rows]
    if key == "dataframe_records":
        if not isinstance(body, list):
            raise RequestError("dataframe_records must be a list of objects")
        return body
    if isinstance(body, dict):  # instances / inputs as columns
        return _columns_to_records(key, body)
    if isinstance(body, list):
        return body
    raise RequestError(f"{key} must be a list of rows or an object of columns")


def _number(v: str) -> Any:
    """An int (when it fits 64 bits), else a float, else the text itself.

    >>> _number("3"), _number("1.5"), _number("1" + "0" * 400), _number("x")
    (3, 1.5, inf, 'x')
    """
    if len(v) <= 20:
        try:
            i = int(v)
            if -2**63 <= i < 2**63:
                return i
        except ValueError:
            pass
    try:
        return float(v)
    except ValueError:
        return v


def _cell(v: str) -> Any:
    """A tabular CSV cell of a numeric column: empty is missing (null), else a number
    (or the text, which the model's check names).

    >>> _cell(""), _cell("3"), _cell("true")
    (None, 3, True)
    """
    if v == "":
        return None
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    return _number(v)


def records_from_csv(text: str, numeric: set[str], *, exact: bool = False,
                     ) -> list[dict[str, Any]]:
    r"""Rows of a CSV with a header line; a row of another length is refused. Columns
    in ``numeric`` are read as numbers: matched in any case (a forecast's fields), or
    with ``exact`` by their exact names, an empty cell being null and true/false
    booleans (a tabular model's inputs).

    >>> records_from_csv("store,date\n1,2012-11-02\n", {"store"})
    [{'store': 1, 'date': '2012-11-02'}]
    >>> records_from_csv("store,date\n1,2012-11-02,7\n", {"store"})
    Traceback (most recent call last):
    ...
    cd4ml.errors.RequestError: csv line 2: 3 values but the header has 2 columns (store, date)
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None:
            raise RequestError("csv: the body is empty; send a header line and rows")
        if len(set(header)) != len(header):
            raise RequestError(f"csv line 1: the header names a column twice: "
                               f"{short_repr(header)}")
        casts = [(k if exact else k.lower()) in numeric for k in header]
        cast = _cell if exact else _number
        out = []
        for r in reader:
            if len(r) != len(header):
                if not r:
                    continue  # a blank line
                raise RequestError(f"csv line {reader.line_num}: {len(r)} values but the "
                                   f"header has {len(header)} columns ({', '.join(header)})")
            out.append({k: (cast(v) if c else v)
                        for k, v, c in zip(header, r, casts, strict=True)})
    except csv.Error as exc:
        raise RequestError(f"csv line {reader.line_num}: {exc}") from None
    return out


def _text(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raise RequestError("csv: the body starts with a UTF-8 byte order mark; send UTF-8 "
                           "without it")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"csv: the body is not valid UTF-8: {exc.reason} at byte "
                           f"{exc.start}") from None


def mlflow_router(rt: Any, max_rows: int, max_bytes: int) -> APIRouter:
    """Routes of the protocol; ``rt`` is the app's :class:`~cd4ml.serving.app.Runtime`."""
    r = APIRouter(tags=["mlflow"])  # the tag gives its errors MLflow's shape (routes.py)

    @r.get("/ping", tags=[PROBE])
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
        c = rt.contract(m)
        raw, ctype = await read_checked(request, rt.guard, max_bytes, MLFLOW)
        if ctype == "application/json":
            records = records_from_json(parse_json(raw))
        else:  # text/csv
            numeric = {f for f, num in m.numeric.items() if num}
            records = records_from_csv(_text(raw), numeric, exact=c.case_sensitive)
        if not records:
            raise RequestError("no rows to score")
        if len(records) > max_rows:
            raise RequestError(f"{len(records)} rows is more than the limit of {max_rows} "
                               f"per request (serving.max_batch_rows)", status=413)
        got = await rt.score(request, records, "/invocations", raw, ctype)
        return json_answer({"predictions": got.contract.mlflow_predictions(got.outputs)})

    return r
