"""The tensors of the Open Inference Protocol v2: requests decoded (JSON and the binary
tensor data extension) and answers encoded, each output as JSON data or binary bytes.

A request that breaks the protocol's shape (``parameters`` or ``outputs`` of the wrong
type, a ``binary_data_size`` that is not a whole number of bytes in the body, a shape
whose size differs from its data) is refused by :class:`V2Error` (400) naming the part.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from fastapi import Response

from cd4ml.errors import RequestError, short_repr
from cd4ml.serving.jsonbody import json_answer, parse_json

__all__ = ["NUMERIC", "V2Error", "decode_request", "encode_response", "mlserver_outputs",
           "selected_outputs", "no_output", "Tensor", "OUTPUT", "MATRIX_OUTPUT"]

NUMERIC = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
           "FP32": "<f4", "FP64": "<f8"}


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


def _numbers(data: Any, name: str) -> np.ndarray:
    """A numeric tensor's JSON data (nested lists) as a flat float64 array.

    >>> _numbers([[1, 2.5], [3, True]], "x").tolist()
    [1.0, 2.5, 3.0, 1.0]
    >>> _numbers([[1, "2"]], "x")
    Traceback (most recent call last):
    ...
    cd4ml.serving.v2_tensors.V2Error: input 'x': its data holds values that are not numbers (nested lists of numbers, one level per dimension)
    """
    try:
        arr = np.asarray(data)
    except ValueError:  # ragged nesting
        arr = np.asarray(_flatten(data), dtype=object)
    if arr.dtype.kind not in "biuf":
        raise V2Error(f"input {name!r}: its data holds values that are not numbers (nested "
                      f"lists of numbers, one level per dimension)")
    return arr.reshape(-1).astype(np.float64, copy=False)


def _not_null(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    """A key sent as null is refused (the schema gives each a type; leave it out instead)."""
    for k in keys:
        if k in obj and obj[k] is None:
            raise V2Error(f"{where}{k} is null; give {'a list' if k == 'outputs' else 'an object'}"
                          f" or leave it out")


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


def _known_keys(obj: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    extra = sorted(set(obj) - set(known))
    if extra:
        raise V2Error(f"{what}: unknown key {extra[0]!r}; the protocol's keys are "
                      f"{list(known)}")


def _flag(params: dict[str, Any], key: str, what: str) -> None:
    if key in params and not isinstance(params[key], bool):
        raise V2Error(f"{what}.{key} must be true or false; got {short_repr(params[key])}")


def decode_request(body: bytes, header_len: int | None,
                   outputs: tuple[str, ...] = (OUTPUT,),
                   arrays: Callable[[dict[str, Any]], bool] | None = None,
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON header and each input's flat values; shapes and sizes are checked, and
    the outputs asked for must be among ``outputs`` (the model's). When ``arrays(header)``
    is true, numeric inputs come as flat numpy arrays (no Python value per element: a
    matrix of many rows), else as lists."""
    head, binary = (body[:header_len], body[header_len:]) if header_len is not None \
        else (body, b"")
    if header_len is not None and not 0 <= header_len <= len(body):
        raise V2Error(f"Inference-Header-Content-Length = {header_len} but the body has "
                      f"{len(body)} bytes")
    req = parse_json(head, V2Error, "request")
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise V2Error("request needs 'inputs': a non-empty list of tensors")
    _known_keys(req, _REQUEST_KEYS, "the request")
    _not_null(req, ("outputs",), "")  # parameters may be null: none (the schemas say so)
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
    values: dict[str, Any] = {}
    offset = 0
    as_array = arrays is not None and arrays(req)
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
                flat = np.frombuffer(chunk, dtype=NUMERIC[dtype])
                if not as_array:
                    flat = flat.tolist()
        else:
            if "data" not in t:
                raise V2Error(f"input {name!r}: no 'data' and no binary_data_size")
            if as_array and dtype != "BYTES":
                # the nested lists go at once, not when the request ends: alive across
                # its awaits, a 1,000-row tensor's lists reached the collector's oldest
                # generation, and each full pass over it stalls the server ~100 ms
                flat = t["data"] = _numbers(t["data"], name)
            else:
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


def selected_outputs(req: dict[str, Any], tensors: list[Tensor]) -> list[tuple[Tensor, bool]]:
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


def _json_data(datatype: str, values: Any) -> Any:
    """A tensor's values for the JSON answer: strings, or a flat numeric array (orjson
    writes it as a list)."""
    arr = np.asarray(values)
    if datatype == "BYTES":
        return [str(v) for v in arr.reshape(-1).tolist()]
    return np.ascontiguousarray(arr.reshape(-1), dtype=NUMERIC[datatype])


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
        return json_answer(head)
    text = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(text + b"".join(raws), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(text))})


def no_output(req: dict[str, Any], name: str | None, why: str) -> None:
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
