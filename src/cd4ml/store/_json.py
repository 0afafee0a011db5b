"""JSON helpers shared by the artifact and metadata stores.

>>> canonical_json({"b": [1, 2.5], "a": float("nan"), "é": None})
b'{"a":null,"b":[1,2.5],"\\xc3\\xa9":null}'
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import PurePath
from typing import Any

__all__ = ["to_jsonable", "canonical_json"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, paths and datetimes made plain, NaN/inf made None.

    Non-finite floats become ``None`` because JSON (and PostgreSQL's ``json``) has no NaN.

    >>> to_jsonable({"a": float("inf"), "b": (1, 2.5), "c": PurePath("x/y"), 3: {1}})
    {'a': None, 'b': [1, 2.5], 'c': 'x/y', '3': [1]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if callable(getattr(obj, "tolist", None)):  # numpy scalar or array
        return to_jsonable(obj.tolist())
    if callable(getattr(obj, "item", None)):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON: {obj!r}")


def canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of ``obj``: sorted keys, no spaces, NaN as null.

    Equal objects give equal bytes, so their content hashes agree.
    """
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")
