"""Open Inference Protocol v2 (KServe, Triton, MLServer): JSON and binary tensor data.

One named tensor per request field: for a forecast ``store``, ``dept`` as numbers and
``date`` as BYTES, answered with one FP64 tensor ``prediction``; for a tabular model one
per input column (numeric datatypes for numeric columns, BYTES for strings), answered
with ``label`` [n] and ``probabilities`` [n, k] (a classifier) or ``prediction``. A
tabular model also takes a single 2-D numeric tensor [n, k] of every input in
signature order, under any name (as MLServer's LightGBM runtime takes it), and answers
it as that runtime does: one tensor ``predict``, ``Booster.predict``'s values (a
binary classifier's positive-class probability as a column [n, 1]), with
``parameters: {"content_type": "np"}``, so a client written for MLServer works
unchanged. The outputs a request names (``outputs``) are the ones answered. With the
binary tensor data extension (what ``tritonclient`` sends by default) the body is the
JSON header, ``Inference-Header-Content-Length`` bytes long, followed by raw tensors.
A request that breaks the protocol's shape (``parameters`` or ``outputs`` of the wrong
type, a ``binary_data_size`` that is not a whole number of bytes in the body, a shape
whose size differs from its data, a version that is not a number) gets 400 naming the
part; rows the model cannot answer get 422, an unknown model or version 404.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cd4ml import __version__
from cd4ml.serving.guard import V2_INFER
from cd4ml.serving.limits import read_checked
from cd4ml.serving.routes import PROBE, context_of
from cd4ml.serving.v2_tensors import (MATRIX_OUTPUT, NUMERIC, V2Error, decode_request,
                                      encode_response, mlserver_outputs, no_output,
                                      selected_outputs)

__all__ = ["v2_router", "decode_request", "NUMERIC"]

_HEADER = "inference-header-content-length"
#: v2 datatypes of the signature's input types
_DATATYPES = {"date": "BYTES", "string": "BYTES", "integer": "INT64", "number": "FP64",
              "boolean": "BOOL"}


def _head(m: Any, req: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = {"model_name": m.name, "model_version": str(m.version),
                            "outputs": None}
    if "id" in req:
        head["id"] = req["id"]
    return head


def v2_router(rt: Any, max_rows: int, max_bytes: int) -> APIRouter:
    """Routes of the protocol; ``rt`` is the app's :class:`~cd4ml.serving.app.Runtime`."""
    r = APIRouter(tags=["v2"])  # the tag gives its errors the protocol's shape (routes.py)

    def check(name: str, version: str | None) -> Any:
        m = rt.holder.model
        if name != m.name:
            raise V2Error(f"model {name!r} is not served here; served: {m.name!r}", 404)
        if version is not None and not (version.isascii() and version.isdigit()):
            raise V2Error(f"model {name!r} version {version!r} is not a version number "
                          f"(versions are whole numbers; loaded: version {m.version})")
        if version is None:
            return m
        table = rt.router.table
        live = {str(r.version): r.model for r in table.live} if table else {}
        if version not in live:
            raise V2Error(f"model {name!r} version {version!r} is not loaded; loaded: "
                          + ", ".join(f"version {v}" for v in live or [str(m.version)]), 404)
        return live[version]

    @r.get("/v2")
    async def server_meta() -> dict[str, Any]:
        return {"name": "cd4ml", "version": __version__, "extensions": ["binary_tensor_data"]}

    @r.get("/v2/health/live", tags=[PROBE])
    async def live() -> dict[str, Any]:
        return {"live": True}

    @r.get("/v2/health/ready", tags=[PROBE])
    async def ready() -> Any:
        ok, why = rt.readiness()
        if ok:
            return {"ready": True}
        return JSONResponse({"ready": False, "reason": why}, status_code=503)

    def metadata(m: Any) -> dict[str, Any]:
        inputs = [{"name": i["name"], "datatype": _DATATYPES.get(i["type"], "FP64"),
                   "shape": [-1]} for i in m.manifest["signature"]["inputs"]]
        return {"name": m.name, "versions": [str(m.version)], "platform": "cd4ml",
                "inputs": inputs, "outputs": rt.contract(m).v2_outputs_meta}

    @r.get("/v2/models/{name}")
    async def model_meta(name: str) -> Any:
        return metadata(check(name, None))

    @r.get("/v2/models/{name}/versions/{version}")
    async def model_version_meta(name: str, version: str) -> Any:
        return metadata(check(name, version))

    def model_is_ready(name: str, version: str | None) -> Any:
        check(name, version)
        ok, why = rt.readiness()
        if ok:
            return {"name": name, "ready": True}
        return JSONResponse({"name": name, "ready": False, "reason": why}, status_code=503)

    @r.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Any:
        return model_is_ready(name, None)

    @r.get("/v2/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: str) -> Any:
        return model_is_ready(name, version)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        m = check(name, version)
        c = rt.contract(m)
        hl = request.headers.get(_HEADER)
        try:
            header_len = int(hl) if hl is not None else None
        except ValueError:
            raise V2Error(f"Inference-Header-Content-Length = {hl!r} is not a number") from None
        body, ctype = await read_checked(request, rt.guard, max_bytes, V2_INFER)

        def matrix(req: dict[str, Any]) -> bool:
            """One input tensor that is not a field: every input in one 2-D tensor."""
            ins = req["inputs"]
            return len(ins) == 1 and isinstance(ins[0], dict) and \
                ins[0].get("name") not in c.field_set

        req, values = decode_request(body, header_len, c.v2_output_names,
                                     matrix if c.matrix else None)
        ctype = ctype or "application/json"
        fields = list(m.fields)
        if c.matrix and matrix(req):
            return await _infer_matrix(request, m, c, req, values, body, ctype,
                                       None if version is None else int(version))
        no_output(req, MATRIX_OUTPUT, "it answers one tensor per input")
        dtypes = {t["name"]: t["datatype"].upper() for t in req["inputs"]}
        unknown = sorted(set(values) - set(fields))
        missing = [f for f in fields if f not in values]
        if unknown or missing:
            raise V2Error(f"inputs must be exactly {fields}; unknown: {unknown}, "
                          f"missing: {missing}", errors=[
                              *({"loc": f"inputs.{f}", "field": f, "value": None,
                                 "problem": "input tensor required",
                                 "reason": "missing_field"} for f in missing),
                              *({"loc": f"inputs.{f}", "field": f, "value": None,
                                 "problem": "not an input of the model",
                                 "reason": "unknown_field"} for f in unknown)])
        for f, dtype in dtypes.items():
            want = "BYTES" if not m.numeric.get(f, False) else None
            if (want == "BYTES") != (dtype == "BYTES"):
                raise V2Error(f"input {f!r}: datatype {dtype} does not fit the field; send "
                              + ("BYTES (strings)" if want else "a numeric datatype (INT64)"),
                              errors=[{"loc": f"inputs.{f}", "field": f, "value": dtype,
                                       "problem": "datatype does not fit the field",
                                       "reason": "wrong_type"}])
        n = {len(v) for v in values.values()}
        if len(n) != 1:
            raise V2Error(f"inputs hold different numbers of rows: "
                          f"{ {k: len(v) for k, v in values.items()} }")
        rows = n.pop()
        if rows > max_rows:
            raise V2Error(f"{rows} rows is more than the limit of {max_rows} per request", 413)
        records = [{f: values[f][i] for f in fields} for i in range(rows)]
        got = await rt.score(request, records, "/v2/infer", body, ctype,
                             version=None if version is None else int(version))
        return encode_response(_head(got.model, req),
                               selected_outputs(req, got.contract.v2_outputs(got.outputs)))

    async def _infer_matrix(request: Request, m: Any, c: Any, req: dict[str, Any],
                            values: dict[str, list[Any]], body: bytes,
                            ctype: str, version: int | None) -> Response:
        """One 2-D tensor of every input in signature order, answered as MLServer's
        LightGBM runtime answers (:func:`mlserver_outputs`)."""
        ((tname, flat),) = values.items()
        t = next(x for x in req["inputs"] if x["name"] == tname)
        k = len(m.fields)
        if t["datatype"].upper() == "BYTES" or len(t["shape"]) != 2 or t["shape"][1] != k:
            raise V2Error(f"input {tname!r}: expected one numeric tensor of shape [n, {k}] "
                          f"holding every input in signature order ({', '.join(m.fields)}), "
                          f"or one tensor per input; got {t['datatype']} {t['shape']}",
                          errors=[{"loc": f"inputs.{tname}", "field": tname, "value": None,
                                   "problem": "not an input of the model",
                                   "reason": "unknown_field"}])
        rows = t["shape"][0]
        if rows > max_rows:
            raise V2Error(f"{rows} rows is more than the limit of {max_rows} per request", 413)
        if rows == 0:
            raise V2Error(f"input {tname!r}: no rows (shape {t['shape']})")
        no_output(req, None, "it answers one 2-D tensor " + repr(MATRIX_OUTPUT))
        # numbers (decoded so), as the datatype says: an FP32 tensor stays float32, so its
        # values at a float32-rounded schema bound count as the bound (tabular_encode)
        single = t["datatype"].upper() in ("FP32", "FP16")
        M = np.asarray(flat, dtype=np.float32 if single else np.float64).reshape(rows, k)
        got = await rt.score(request, [], "/v2/infer", body, ctype, matrix=M, version=version)
        m, c, preds = got.model, got.contract, got.outputs
        # MLServer's answer: its id is the request's, else a fresh one (here the
        # server's request id, which the prediction log holds), and empty parameters
        head = {"model_name": m.name, "model_version": str(m.version),
                "id": req.get("id", context_of(request).request_id), "parameters": {},
                "outputs": None}
        return encode_response(head, selected_outputs(req, mlserver_outputs(
            c.mlserver_output(preds))))

    @r.post("/v2/models/{name}/infer")
    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @r.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    return r
