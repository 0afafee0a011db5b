"""Column kinds and JSON-safe values, shared by schema inference, validation and profiles.

>>> import pandas as pd
>>> [column_type(pd.Series(v)) for v in ([1, 2], [1.5, None], ["a"], [True], [True, None])]
['int', 'float', 'string', 'bool', 'bool']
>>> column_type(pd.to_datetime(pd.Series(["2010-02-05"])))
'date'
>>> json_value(pd.Timestamp("2010-02-05")), json_value(float("nan")), json_value(np.int64(3))
('2010-02-05', None, 3)
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as pdt

ColumnType = Literal["int", "float", "string", "bool", "date"]
COLUMN_TYPES: tuple[str, ...] = ("int", "float", "string", "bool", "date")


def column_type(s: pd.Series) -> ColumnType:
    """The schema type of a column from its dtype (object columns of bools are 'bool')."""
    if pdt.is_bool_dtype(s.dtype):
        return "bool"
    if pdt.is_integer_dtype(s.dtype):
        return "int"
    if pdt.is_float_dtype(s.dtype):
        return "float"
    if pdt.is_datetime64_any_dtype(s.dtype):
        return "date"
    if s.dtype == object:
        vals = s.dropna()
        if len(vals) and vals.map(type).isin([bool, np.bool_]).all():
            return "bool"
        if len(vals) and vals.map(lambda v: isinstance(v, (dt.date, pd.Timestamp))).all():
            return "date"
    return "string"


def json_value(v: Any) -> Any:
    """A plain JSON value for a cell: numpy scalars unwrapped, NaN/NaT -> None, dates ISO.

    Midnight timestamps print as a date only (``2010-02-05``), others in full ISO form.
    """
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        ts = pd.Timestamp(v)
        return ts.date().isoformat() if ts == ts.normalize() and ts.tz is None \
            else ts.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (bool, int, str)):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def examples(mask: np.ndarray, values: pd.Series | pd.DataFrame, limit: int = 5,
             ) -> list[dict[str, Any]]:
    """Up to ``limit`` ``{"row": i, "value": v}`` for the True positions of ``mask``.

    ``row`` is the 0-based position in the frame (for a CSV with a header: file line - 2).
    For a frame of several columns ``value`` is a ``{column: value}`` mapping.

    >>> examples(np.array([False, True, True]), pd.Series([1, 2, None]))
    [{'row': 1, 'value': 2.0}, {'row': 2, 'value': None}]
    """
    rows = np.flatnonzero(mask)[:limit]
    out = []
    for i in rows:
        if isinstance(values, pd.DataFrame):
            val: Any = {c: json_value(values[c].iat[i]) for c in values.columns}
        else:
            val = json_value(values.iat[i])
        out.append({"row": int(i), "value": val})
    return out
