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

import json
import math
import struct
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cd4ml import __version__
from cd4ml.errors import RequestError, short_repr
from cd4ml.serving.guard import V2_INFER
from cd4ml.serving.jsonbody import parse_json
from cd4ml.serving.limits import read_checked
from cd4ml.serving.routes import context_of

__all__ = ["v2_router", "decode_request", "NUMERIC"]

NUMERIC = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
           "FP32": "<f4", "FP64": "<f8"}
_HEADER = "inference-header-content-length"


class V2Error(RequestError):
    """A request the protocol refuses (400 unless said); the app answers ``{"error": ...}``."""

    def __init__(self, message: str, status: int = 400,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors=errors, status=status)


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
#: the output tensor of a forecast
OUTPUT = "prediction"
#: the output of an answer to one 2-D tensor of all inputs (MLServer's LightGBM runtime)
MATRIX_OUTPUT = "predict"
#: v2 datatypes of the signature's input types
_DATATYPES = {"date": "BYTES", "string": "BYTES", "integer": "INT64", "number": "FP64",
              "boolean": "BOOL"}


def _known_keys(obj: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    extra = sorted(set(obj) - set(known))
    if extra:
        raise V2Error(f"{what}: unknown key {extra[0]!r}; the protocol's keys are "
                      f"{list(known)}")


def _flag(params: dict[str, Any], key: str, what: str) -> None:
    if key in params and not isinstance(params[key], bool):
        raise V2Error(f"{what}.{key} must be true or false; got {short_repr(params[key])}")


def decode_request(body: bytes, header_len: int | None,
                   outputs: tuple[str, ...] = (OUTPUT,)) -> tuple[dict[str, Any],
                                                                  dict[str, list[Any]]]:
    """The JSON header and each input's flat values; shapes and sizes are checked, and
    the outputs asked for must be among ``outputs`` (the model's)."""
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
        if o["name"] not in outputs:
            known = f"its output is {outputs[0]!r}" if len(outputs) == 1 else \
                f"its outputs are {list(outputs)}"
            raise V2Error(f"outputs[{i}]: {o['name']!r} is not an output of the model; "
                          f"{known}")
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


Tensor = tuple[str, str, list[int], Any]  # name, datatype, shape, values


def _selected(req: dict[str, Any], tensors: list[Tensor]) -> list[tuple[Tensor, bool]]:
    """The output tensors the request asks for, in its order (all, when it names none),
    each with whether it goes as binary data."""
    outs = req.get("outputs") or []
    if not outs:
        binary = (req.get("parameters") or {}).get("binary_data_output") is True
        return [(t, binary) for t in tensors]
    by_name = {t[0]: t for t in tensors}
    return [(by_name[o["name"]], (o.get("parameters") or {}).get("binary_data") is True)
            for o in outs if o["name"] in by_name]


def _raw_bytes(datatype: str, values: Any) -> bytes:
    """A tensor's values as the binary extension sends them."""
    if datatype == "BYTES":
        out = bytearray()
        for v in np.asarray(values, dtype=object).reshape(-1).tolist():
            b = str(v).encode("utf-8")
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return np.ascontiguousarray(values, dtype=NUMERIC[datatype]).tobytes()


def _json_data(datatype: str, values: Any) -> list[Any]:
    arr = np.asarray(values)
    if datatype == "BYTES":
        return [str(v) for v in arr.reshape(-1).tolist()]
    return arr.reshape(-1).tolist()  # type: ignore[no-any-return]


def encode_response(head: dict[str, Any], outputs: list[tuple[Tensor, bool]]) -> Response:
    """The answer: JSON, or the JSON header then the binary outputs' bytes. A tensor with
    parameters (a fifth item) is written as MLServer writes its outputs (name, shape,
    datatype, parameters, data)."""
    raws: list[bytes] = []
    head["outputs"] = []
    for (name, datatype, shape, values, *extra), binary in outputs:
        t: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if extra and extra[0]:
            t = {"name": name, "shape": shape, "datatype": datatype,
                 "parameters": dict(extra[0])}
        if binary:
            raw = _raw_bytes(datatype, values)
            t["parameters"] = {**t.get("parameters", {}), "binary_data_size": len(raw)}
            raws.append(raw)
        else:
            t["data"] = _json_data(datatype, values)
        head["outputs"].append(t)
    if not raws:
        return JSONResponse(head)
    text = json.dumps(head).encode()
    return Response(text + b"".join(raws), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(text))})


def _no_output(req: dict[str, Any], name: str | None, why: str) -> None:
    """Refuse a request naming output ``name`` (None: any other than the matrix's)."""
    for i, o in enumerate(req.get("outputs") or []):
        if (o["name"] == name) if name is not None else (o["name"] != MATRIX_OUTPUT):
            raise V2Error(f"outputs[{i}]: {o['name']!r} is not an output of this request's "
                          f"shape: {why}")


def mlserver_outputs(values: np.ndarray) -> list[Tensor]:
    """The output of MLServer 1.7.1's LightGBM runtime for ``Booster.predict``'s answer:
    ``NumpyCodec.encode_output("predict", ...)``, a 1-D answer as a column."""
    v = np.asarray(values)
    shape = [len(v), 1] if v.ndim == 1 else list(v.shape)
    return [(MATRIX_OUTPUT, _NUMPY_DATATYPES.get(v.dtype.str, "FP64"), shape, v,
             {"content_type": "np"})]  # type: ignore[list-item]


_NUMPY_DATATYPES = {np.dtype(v).str: k for k, v in NUMERIC.items()}


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
        names = tuple(o["name"] for o in c.v2_outputs_meta)
        req, values = decode_request(body, header_len,
                                     (*names, MATRIX_OUTPUT) if c.matrix else names)
        ctype = ctype or "application/json"
        fields = list(m.fields)
        if c.matrix and len(values) == 1 and next(iter(values)) not in c.field_set:
            return await _infer_matrix(request, m, c, req, values, body, ctype)
        _no_output(req, MATRIX_OUTPUT, "it answers one tensor per input")
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
        preds = await rt.score(request, m, records, "/v2/infer", body, ctype)
        return encode_response(_head(m, req), _selected(req, c.v2_outputs(preds)))

    async def _infer_matrix(request: Request, m: Any, c: Any, req: dict[str, Any],
                            values: dict[str, list[Any]], body: bytes,
                            ctype: str) -> Response:
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
        _no_output(req, None, "it answers one 2-D tensor " + repr(MATRIX_OUTPUT))
        try:
            M = np.asarray(flat, dtype=np.float64).reshape(rows, k)
        except (TypeError, ValueError):
            raise V2Error(f"input {tname!r}: its data holds values that are not numbers"
                          ) from None
        preds = await rt.score(request, m, [], "/v2/infer", body, ctype, matrix=M)
        # MLServer's answer: its id is the request's, else a fresh one (here the
        # server's request id, which the prediction log holds), and empty parameters
        head = {"model_name": m.name, "model_version": str(m.version),
                "id": req.get("id", context_of(request).request_id), "parameters": {},
                "outputs": None}
        return encode_response(head, _selected(req, mlserver_outputs(
            c.mlserver_output(preds))))

    @r.post("/v2/models/{name}/infer")
    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @r.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    return r
