"""A JSON-able statistical profile of a frame: the reference later drift checks compare to.

Numeric columns keep moments, quantiles and a 20-bin equal-width histogram (edges and
counts), so a later sample can be binned on the same edges; string and bool columns keep
their top values with counts and how many rows fall outside them.

>>> import pandas as pd
>>> p = profile(pd.DataFrame({"y": [1.0, 2.0, 3.0, None], "k": ["a", "b", "a", "a"]}))
>>> y = p["columns"]["y"]
>>> y["type"], y["count"], y["nulls"], y["null_fraction"], y["mean"], y["std"], y["quantiles"]["p50"]
('float', 3, 1, 0.25, 2.0, 1.0, 2.0)
>>> y["histogram"]["counts"][:3], len(y["histogram"]["edges"])
([1, 0, 0], 21)
>>> p["columns"]["k"]["top"]
[{'value': 'a', 'count': 3}, {'value': 'b', 'count': 1}]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cd4ml.data._types import column_type, json_value

__all__ = ["profile", "PROFILE_VERSION", "QUANTILES", "HISTOGRAM_BINS", "TOP_VALUES"]

#: Bumped when the layout of a profile changes, so a reader can tell old from new.
PROFILE_VERSION = 1
QUANTILES: dict[str, float] = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5,
                               "p75": 0.75, "p95": 0.95, "p99": 0.99}
HISTOGRAM_BINS = 20
TOP_VALUES = 20


def _f(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _numeric(s: pd.Series) -> dict[str, Any]:
    arr = s.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr[~np.isnan(arr)]
    finite = arr[np.isfinite(arr)]
    out: dict[str, Any] = {
        "n_unique": int(len(np.unique(arr))),
        "n_negative": int((arr < 0).sum()),
        "n_zero": int((arr == 0).sum()),
        "n_infinite": int(len(arr) - len(finite)),
    }
    if len(finite) == 0:
        out.update(mean=None, std=None, min=None, max=None,
                   quantiles={k: None for k in QUANTILES}, histogram=None)
        return out
    q = np.quantile(finite, list(QUANTILES.values()))
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    out.update(
        mean=_f(finite.mean()),
        std=_f(finite.std(ddof=1)) if len(finite) > 1 else None,
        min=_f(finite.min()),
        max=_f(finite.max()),
        quantiles={k: _f(v) for k, v in zip(QUANTILES, q)},
        histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    )
    return out


def _categorical(s: pd.Series) -> dict[str, Any]:
    vals = s.dropna()
    counts = vals.value_counts(sort=False)
    # most frequent first; ties in a fixed order (by the value's text) for stable output
    table = pd.DataFrame({"value": counts.index, "count": counts.to_numpy()})
    table["key"] = table["value"].astype("str")
    table = table.sort_values(["count", "key"], ascending=[False, True], kind="stable")
    top = table.head(TOP_VALUES)
    return {
        "n_unique": int(len(counts)),
        "top": [{"value": json_value(v), "count": int(c)}
                for v, c in zip(top["value"], top["count"])],
        "n_other": int(len(vals) - top["count"].sum()),
    }


def _dates(s: pd.Series) -> dict[str, Any]:
    vals = pd.to_datetime(s.dropna())
    return {
        "n_unique": int(vals.nunique()),
        "min": json_value(vals.min()) if len(vals) else None,
        "max": json_value(vals.max()) if len(vals) else None,
    }


def profile(df: pd.DataFrame) -> dict[str, Any]:
    """Per-column statistics of ``df`` as plain JSON types.

    Every column: type, count (non-missing), nulls, null_fraction. Numeric (int, float):
    n_unique, mean, std (ddof=1), min, max, quantiles p01..p99 (numpy's linear method),
    n_negative, n_zero, n_infinite and ``histogram`` = {edges (21), counts (20)} over the
    finite values. String and bool: n_unique, ``top`` (20 most frequent values with
    counts) and n_other. Date: n_unique, min, max (ISO text).
    """
    rows = len(df)
    cols: dict[str, Any] = {}
    for name in df.columns:
        s = df[name]
        kind = column_type(s)
        nulls = int(s.isna().sum())
        entry: dict[str, Any] = {"type": kind, "count": rows - nulls, "nulls": nulls,
                                 "null_fraction": nulls / rows if rows else 0.0}
        if kind in ("int", "float"):
            entry.update(_numeric(s))
        elif kind == "date":
            entry.update(_dates(s))
        else:
            entry.update(_categorical(s))
        cols[str(name)] = entry
    return {"version": PROFILE_VERSION, "rows": rows, "columns": cols}
