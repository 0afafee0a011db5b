"""Rows of a report: groups of a column, one metrics row per group, slices.

Shared by the classification and regression reports and the fairness groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.evaluation.report import _jsonable
from cd4ml.evaluation.tabular_metrics import UNDEFINED

__all__ = ["factorize", "metric_rows", "slice_table", "frame_for", "as_float"]

MakeMetrics = Callable[[np.ndarray, int], Any]  # (codes, G) -> a metric set


def as_float(x: Any) -> float | None:
    """A finite float, or None (NaN, infinity)."""
    x = float(x)
    return x if np.isfinite(x) else None


def frame_for(frame: pd.DataFrame | None, columns: Sequence[str], n: int, *,
              what: str) -> pd.DataFrame | None:
    """``frame`` checked to have ``n`` rows and ``columns`` (named as ``what`` in errors)."""
    columns = list(columns)
    if not columns:
        return frame
    if len(set(columns)) != len(columns):
        raise ValueError(f"{what} = {columns} repeats a column; list each column once")
    if frame is None:
        raise ValueError(f"{what} = {columns} needs frame=, the rows' columns")
    if len(frame) != n:
        raise ValueError(f"frame has {len(frame):,} rows but y has {n:,}; pass the rows "
                         "that were scored, in the same order")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} column(s) {missing} not in the frame; it has "
                         f"{list(frame.columns)}")
    return frame


def factorize(values: pd.Series) -> tuple[list[Any], np.ndarray]:
    """The distinct values (sorted; missing last, as None) and each row's code."""
    arr = pd.Series(values.array)
    try:
        codes, uniques = pd.factorize(arr, sort=True, use_na_sentinel=False)
    except TypeError:  # mixed types that do not sort: first-seen order
        codes, uniques = pd.factorize(arr, sort=False, use_na_sentinel=False)
    return [_jsonable(v) for v in uniques], np.asarray(codes, dtype=np.int64)


def metric_rows(values: Mapping[str, np.ndarray], names: Sequence[str], G: int,
                ) -> list[dict[str, Any]]:
    """Per group: each metric of ``names`` (None when undefined) and ``undefined`` reasons.

    ``values`` maps a name to ``(1, G)`` (a metric set's ``compute`` with ``W = 1``).
    """
    rows = []
    for g in range(G):
        row: dict[str, Any] = {}
        for name in names:
            v = as_float(values[name][0, g]) if name in values else None
            row[name] = v
        row["undefined"] = {m: UNDEFINED.get(m, "undefined on these rows")
                            for m in names if row[m] is None}
        rows.append(row)
    return rows


def slice_table(frame: pd.DataFrame, column: str, make: MakeMetrics,
                names: Sequence[str]) -> list[dict[str, Any]]:
    """Per value of ``column``: ``value``, ``n``, ``weight_share`` and the metrics."""
    values, codes = factorize(frame[column])
    metrics = make(codes, len(values))
    point = metrics.point(names)
    total = float(codes.size)
    return [{"value": v, "n": int(point["n"][0, g]),
             "weight_share": float(point["n"][0, g] / total), **row}
            for g, (v, row) in enumerate(zip(values, metric_rows(point, names, len(values))))]
