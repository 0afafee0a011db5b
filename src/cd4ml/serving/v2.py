"""Open Inference Protocol v2 (KServe, Triton, MLServer): JSON and binary tensor data.

One named tensor per request field of the forecasting contract (``store``, ``dept`` as
numbers, ``date`` as BYTES); the answer is one FP64 tensor ``prediction``. With the
binary tensor data extension (what ``tritonclient`` sends by default) the body is the
JSON header, ``Inference-Header-Content-Length`` bytes long, followed by raw tensors.
A request that breaks the protocol's shape (``parameters`` or ``outputs`` of the wrong
type, a ``binary_data_size`` that is not a whole number of bytes in the body, a shape
whose size differs from its data, a version that is not a number) gets 400 naming the
part; rows the model cannot answer get 422, an unknown model or version 404.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cd4ml import __version__
from cd4ml.errors import RequestError, short_repr
from cd4ml.registry.servable import ServableModel
from cd4ml.serving.guard import V2_INFER
from cd4ml.serving.jsonbody import parse_json
from cd4ml.serving.limits import read_checked

__all__ = ["v2_router", "decode_request", "NUMERIC"]

NUMERIC = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
           "FP32": "<f4", "FP64": "<f8"}
_HEADER = "inference-header-content-length"


class V2Error(RequestError):
    """A request the protocol refuses (400 unless said); the app answers ``{"error": ...}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status=status)


def _bytes_elements(raw: bytes, name: str) -> list[str]:
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise V2Error(f"input {name!r}: truncated BYTES element at offset {i}")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise V2Error(f"input {name!r}: BYTES element of {n} bytes runs past the data")
        try:
            out.append(raw[i:i + n].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise V2Error(f"input {name!r}: BYTES element {len(out)} is not valid UTF-8 "
                          f"({exc.reason})") from None
        i += n
    return out


def _flatten(data: Any) -> list[Any]:
    """Nested lists in row-major order, flat (without recursion: nesting is the client's).

    >>> _flatten([[1, 2], [3, [4]]]), _flatten(5)
    ([1, 2, 3, 4], [5])
    """
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _object(v: Any, what: str) -> dict[str, Any]:
    """``v`` when it is an object (None as an empty one), else a 400 naming ``what``."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise V2Error(f"{what} must be an object; got {short_repr(v)}")
    return v


#: the keys of a request, of an input tensor (the protocol's, nothing else)
_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_TENSOR_KEYS = ("name", "shape", "datatype", "parameters", "data")
#: the one output tensor
OUTPUT = "prediction"


def _known_keys(obj: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    extra = sorted(set(obj) - set(known))
    if extra:
        raise V2Error(f"{what}: unknown key {extra[0]!r}; the protocol's keys are "
                      f"{list(known)}")


def _flag(params: dict[str, Any], key: str, what: str) -> None:
    if key in params and not isinstance(params[key], bool):
        raise V2Error(f"{what}.{key} must be true or false; got {short_repr(params[key])}")


def decode_request(body: bytes, header_len: int | None) -> tuple[dict[str, Any],
                                                                  dict[str, list[Any]]]:
    """The JSON header and each input's flat values; shapes and sizes are checked."""
    head, binary = (body[:header_len], body[header_len:]) if header_len is not None \
        else (body, b"")
    if header_len is not None and not 0 <= header_len <= len(body):
        raise V2Error(f"Inference-Header-Content-Length = {header_len} but the body has "
                      f"{len(body)} bytes")
    req = parse_json(head, V2Error, "request")
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise V2Error("request needs 'inputs': a non-empty list of tensors")
    _known_keys(req, _REQUEST_KEYS, "the request")
    _flag(_object(req.get("parameters"), "parameters"), "binary_data_output", "parameters")
    if "id" in req and not isinstance(req["id"], str):
        raise V2Error(f"id must be a string; got {short_repr(req['id'])}")
    outs = req.get("outputs")
    if outs is not None and (not isinstance(outs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs)):
        raise V2Error(f"outputs must be a list of objects with a 'name'; got {short_repr(outs)}")
    for i, o in enumerate(outs or []):
        _known_keys(o, ("name", "parameters"), f"outputs[{i}]")
        if o["name"] != OUTPUT:
            raise V2Error(f"outputs[{i}]: {o['name']!r} is not an output of the model; "
                          f"its output is {OUTPUT!r}")
        _flag(_object(o.get("parameters"), f"outputs[{i}].parameters"), "binary_data",
              f"outputs[{i}].parameters")
    values: dict[str, list[Any]] = {}
    offset = 0
    for t in req["inputs"]:
        if not isinstance(t, dict) or not all(k in t for k in ("name", "shape", "datatype")):
            raise V2Error("each input needs 'name', 'shape' and 'datatype'")
        name, dtype, shape = t["name"], t["datatype"], t["shape"]
        if not isinstance(name, str):
            raise V2Error(f"an input's name must be a string; got {short_repr(name)}")
        _known_keys(t, _TENSOR_KEYS, f"input {name!r}")
        if not isinstance(dtype, str) or (dtype.upper() not in NUMERIC and
                                          dtype.upper() != "BYTES"):
            raise V2Error(f"input {name!r}: datatype {short_repr(dtype)} is not one of "
                          f"{[*NUMERIC, 'BYTES']}")
        dtype = dtype.upper()
        if not isinstance(shape, list) or not all(
                type(d) is int and d >= 0 for d in shape):
            raise V2Error(f"input {name!r}: shape {short_repr(shape)} must be a list of "
                          f"non-negative ints")
        size = math.prod(shape)
        nbytes = _object(t.get("parameters"), f"input {name!r}: parameters").get(
            "binary_data_size")
        if nbytes is not None:
            if type(nbytes) is not int or nbytes < 0:
                raise V2Error(f"input {name!r}: binary_data_size {short_repr(nbytes)} must be a "
                              f"non-negative whole number of bytes")
            chunk = binary[offset:offset + nbytes]
            if len(chunk) != nbytes:
                raise V2Error(f"input {name!r}: binary_data_size {nbytes} runs past the body "
                              f"({len(binary) - offset} bytes of binary data left)")
            offset += nbytes
            if dtype == "BYTES":
                flat: list[Any] = _bytes_elements(chunk, name)
            else:
                item = np.dtype(NUMERIC[dtype]).itemsize
                if len(chunk) % item:
                    raise V2Error(f"input {name!r}: {len(chunk)} bytes is not a whole "
                                  f"number of {dtype} values")
                flat = np.frombuffer(chunk, dtype=NUMERIC[dtype]).tolist()
        else:
            if "data" not in t:
                raise V2Error(f"input {name!r}: no 'data' and no binary_data_size")
            flat = _flatten(t["data"])
        if len(flat) != size:
            raise V2Error(f"input {name!r}: shape {shape} holds {size} values but "
                          f"{len(flat)} were sent")
        if name in values:
            raise V2Error(f"input {name!r} is given twice")
        values[name] = flat
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset} bytes of binary data belong to no input")
    return req, values


def _wants_binary(req: dict[str, Any]) -> bool:
    """Whether the answer goes as binary (``decode_request`` checked the types)."""
    outs = req.get("outputs") or []
    if outs:
        return any((o.get("parameters") or {}).get("binary_data") is True for o in outs)
    return (req.get("parameters") or {}).get("binary_data_output") is True


def v2_router(rt: Any, max_rows: int, max_bytes: int) -> APIRouter:
    """Routes of the protocol; ``rt`` is the app's :class:`~cd4ml.serving.app.Runtime`."""
    r = APIRouter(tags=["v2"])  # the tag gives its errors the protocol's shape (routes.py)

    def check(name: str, version: str | None) -> ServableModel:
        m = rt.holder.model
        if name != m.name:
            raise V2Error(f"model {name!r} is not served here; served: {m.name!r}", 404)
        if version is not None and not (version.isascii() and version.isdigit()):
            raise V2Error(f"model {name!r} version {version!r} is not a version number "
                          f"(versions are whole numbers; loaded: version {m.version})")
        if version is not None and version != str(m.version):
            raise V2Error(f"model {name!r} version {version!r} is not loaded; loaded: "
                          f"version {m.version}", 404)
        return m

    @r.get("/v2")
    async def server_meta() -> dict[str, Any]:
        return {"name": "cd4ml", "version": __version__, "extensions": ["binary_tensor_data"]}

    @r.get("/v2/health/live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @r.get("/v2/health/ready")
    async def ready() -> Any:
        ok, why = rt.readiness()
        if ok:
            return {"ready": True}
        return JSONResponse({"ready": False, "reason": why}, status_code=503)

    def metadata(m: ServableModel) -> dict[str, Any]:
        inputs = [{"name": i["name"], "datatype": "BYTES" if i["type"] in ("date", "string")
                   else "INT64" if i["type"] == "integer" else "FP64", "shape": [-1]}
                  for i in m.manifest["signature"]["inputs"]]
        return {"name": m.name, "versions": [str(m.version)], "platform": "cd4ml",
                "inputs": inputs, "outputs": [{"name": "prediction", "datatype": "FP64",
                                               "shape": [-1]}]}

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
        hl = request.headers.get(_HEADER)
        try:
            header_len = int(hl) if hl is not None else None
        except ValueError:
            raise V2Error(f"Inference-Header-Content-Length = {hl!r} is not a number") from None
        body, ctype = await read_checked(request, rt.guard, max_bytes, V2_INFER)
        req, values = decode_request(body, header_len)
        dtypes = {t["name"]: t["datatype"].upper() for t in req["inputs"]}
        fields = list(m.fields)
        unknown = sorted(set(values) - set(fields))
        missing = [f for f in fields if f not in values]
        if unknown or missing:
            raise V2Error(f"inputs must be exactly {fields}; unknown: {unknown}, "
                          f"missing: {missing}")
        for f, dtype in dtypes.items():
            want = "BYTES" if not m.numeric.get(f, False) else None
            if (want == "BYTES") != (dtype == "BYTES"):
                raise V2Error(f"input {f!r}: datatype {dtype} does not fit the field; send "
                              + ("BYTES (strings)" if want else "a numeric datatype (INT64)"))
        n = {len(v) for v in values.values()}
        if len(n) != 1:
            raise V2Error(f"inputs hold different numbers of rows: "
                          f"{ {k: len(v) for k, v in values.items()} }")
        rows = n.pop()
        if rows > max_rows:
            raise V2Error(f"{rows} rows is more than the limit of {max_rows} per request", 413)
        records = [{f: values[f][i] for f in fields} for i in range(rows)]
        preds = await rt.score(request, m, records, "/v2/infer", body,
                               ctype or "application/json")
        out: dict[str, Any] = {"model_name": m.name, "model_version": str(m.version),
                               "outputs": [{"name": "prediction", "datatype": "FP64",
                                            "shape": [rows]}]}
        if "id" in req:
            out["id"] = req["id"]
        if _wants_binary(req):
            raw = preds.tobytes()
            out["outputs"][0]["parameters"] = {"binary_data_size": len(raw)}
            head = json.dumps(out).encode()
            return Response(head + raw, media_type="application/octet-stream",
                            headers={"Inference-Header-Content-Length": str(len(head))})
        out["outputs"][0]["data"] = preds.tolist()
        return JSONResponse(out)

    @r.post("/v2/models/{name}/infer")
    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @r.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    return r
