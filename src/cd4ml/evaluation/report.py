"""Evaluate one model's holdout predictions: overall, per slice and per horizon.

:func:`evaluate` returns a JSON-able report; :func:`compare` ranks several reports into
a leaderboard. Slices are computed with one vectorised ``groupby`` per column, so a
116k-row Walmart holdout sliced by store, department and type takes milliseconds.

>>> import pandas as pd
>>> frame = pd.DataFrame({"y": [10.0, 20.0, 30.0, 40.0], "p": [12.0, 20.0, 27.0, 40.0],
...                       "w": [1.0, 5.0, 1.0, 1.0], "store": [1, 1, 2, 2],
...                       "ahead": [1, 2, 1, 2]})
>>> rep = evaluate(frame, pred="p", target="y", weight="w", slices=["store"],
...                horizon_col="ahead")
>>> rep["overall"]["wmae"]  # (2 + 0 + 3 + 0) / 8
0.625
>>> [(s["value"], s["n"], s["weight_share"], s["wmae"]) for s in rep["slices"]["store"]]
[(1, 2, 0.75, 0.3333333333333333), (2, 2, 0.25, 1.5)]
>>> [(h["periods_ahead"], h["mae"]) for h in rep["by_horizon"]]
[(1, 2.5), (2, 0.0)]
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import EvaluationConfig
from cd4ml.evaluation.metrics import (
    HIGHER_IS_BETTER, METRIC_NAMES, METRICS, as_array, compute_metrics, holiday_weights,
)

__all__ = ["evaluate", "compare", "evaluation_weights", "improvement_pct", "higher_is_better"]

Report = dict[str, Any]

_SUMS = ["abs", "wabs", "sq", "wsl", "w", "dev2"]


def evaluation_weights(frame: pd.DataFrame, cfg: EvaluationConfig) -> np.ndarray | None:
    """Row weights from the config: ``cfg.weight`` where ``cfg.weight_column`` is true.

    >>> from cd4ml.config import EvaluationConfig
    >>> cfg = EvaluationConfig(weight_column="IsHoliday", weight=5.0)
    >>> evaluation_weights(pd.DataFrame({"IsHoliday": [True, False]}), cfg).tolist()
    [5.0, 1.0]
    """
    if cfg.weight_column is None:
        return None
    _require_columns(frame, [cfg.weight_column])
    return holiday_weights(frame[cfg.weight_column], cfg.weight)


def evaluate(frame: pd.DataFrame, *, pred: str, target: str, weight: str | None = None,
             slices: Sequence[str] = (), horizon_col: str | None = None) -> Report:
    """Metrics of column ``pred`` against ``target``: overall, per slice, per horizon.

    ``weight`` names a column of non-negative row weights (for Walmart, build it with
    :func:`~cd4ml.evaluation.metrics.holiday_weights`). Each slice row holds the slice
    ``value``, its row count ``n``, its ``weight_share`` of the total weight and every
    metric of :func:`~cd4ml.evaluation.metrics.compute_metrics`; slice values are sorted
    and a missing value is its own slice (``None``). ``by_horizon`` is present only when
    ``horizon_col`` (integer periods ahead) is given.
    """
    slices = list(slices)
    if len(set(slices)) != len(slices):
        raise ValueError(f"slices = {slices} repeats a column; list each column once")
    extra = [c for c in [weight, horizon_col] if c is not None]
    _require_columns(frame, [pred, target, *extra, *slices])
    if weight is not None and pd.api.types.is_bool_dtype(frame[weight]):
        raise ValueError(
            f"weight column {weight!r} holds true/false flags, not weights; convert them "
            f"first, e.g. frame['w'] = holiday_weights(frame[{weight!r}], 5.0)")
    y = as_array(frame[target], f"target column {target!r}")
    p = as_array(frame[pred], f"prediction column {pred!r}")
    w = None if weight is None else as_array(frame[weight], f"weight column {weight!r}")
    overall = compute_metrics(y, p, w)  # validates lengths and weights
    if w is None:
        w = np.ones_like(y)
    rows = _row_terms(y, p, w)
    total_w = overall["weight_sum"]
    report: Report = {"overall": overall, "slices": {}}
    for col in slices:
        table = _group_metrics(rows, frame[col])
        report["slices"][col] = [
            {"value": _jsonable(value), "n": int(r["n"]),
             "weight_share": float(r["weight_sum"] / total_w), **_metric_row(r)}
            for value, r in zip(table.index, table.to_dict("records"))]
    if horizon_col is not None:
        steps = as_array(frame[horizon_col], f"horizon column {horizon_col!r}")
        if not np.all(steps == np.round(steps)):
            raise ValueError(f"horizon column {horizon_col!r} must hold whole numbers of "
                             "periods ahead")
        table = _group_metrics(rows, pd.Series(steps.astype("int64"), index=frame.index))
        report["by_horizon"] = [{"periods_ahead": int(k), **_metric_row(r)}
                                for k, r in zip(table.index, table.to_dict("records"))]
    return report


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the frame; it has {list(frame.columns)}")


def _row_terms(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> pd.DataFrame:
    """Per-row summands of every metric; a slice's metrics are sums of these."""
    err = y - p
    log_err2 = (np.log1p(np.clip(p, 0, None)) - np.log1p(np.clip(y, 0, None))) ** 2
    return pd.DataFrame({"y": y, "abs": np.abs(err), "wabs": w * np.abs(err),
                         "sq": err ** 2, "wsl": w * log_err2, "w": w})


def _group_metrics(rows: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """One row of metrics per distinct key, sorted by key (missing keys last)."""
    key = pd.Series(keys.array, name="_key")  # positional, whatever the frame's index
    g = rows.groupby(key, sort=True, dropna=False, observed=True)
    dev2 = (rows["y"] - g["y"].transform("mean")) ** 2  # for R², stable for large sales
    sums = rows.assign(dev2=dev2).groupby(key, sort=True, dropna=False, observed=True)[
        _SUMS].sum()
    n = g.size()
    out = pd.DataFrame(index=sums.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["wmae"] = sums["wabs"] / sums["w"]
        out["mae"] = sums["abs"] / n
        out["rmse"] = np.sqrt(sums["sq"] / n)
        r2 = 1.0 - sums["sq"] / sums["dev2"]
        out["r2"] = r2.where(sums["dev2"] != 0, (sums["sq"] == 0).astype(float))
        out["nwrmsle"] = np.sqrt(sums["wsl"] / sums["w"])
    out["n"] = n
    out["weight_sum"] = sums["w"]
    return out


def _metric_row(r: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {m: _jsonable(float(r[m])) for m in METRICS}
    row["n"] = int(r["n"])
    row["weight_sum"] = float(r["weight_sum"])
    return row


def _jsonable(value: Any) -> Any:
    """A JSON-safe scalar: numpy to Python, dates to ISO text, NaN/NA to None."""
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (_dt.date, _dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, float) and math.isinf(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def higher_is_better(metric: str, higher: bool | None = None) -> bool:
    """Whether a larger ``metric`` is better: ``higher`` if given, else from
    :data:`~cd4ml.evaluation.metrics.HIGHER_IS_BETTER`.

    >>> higher_is_better("roc_auc"), higher_is_better("wmae"), higher_is_better("x", True)
    (True, False, True)
    """
    return metric in HIGHER_IS_BETTER if higher is None else bool(higher)


def improvement_pct(value: float, reference: float, metric: str, *,
                    higher: bool | None = None) -> float | None:
    """How much better ``value`` is than ``reference``, in percent (negative: worse).

    For error metrics ``(reference - value) / reference * 100``; for metrics where higher
    is better (``r2``, ``roc_auc``, ...; or ``higher=True``)
    ``(value - reference) / |reference| * 100``. ``None`` when ``reference`` is 0 and the
    two differ (no finite percentage).

    >>> improvement_pct(90.0, 100.0, "wmae"), improvement_pct(110.0, 100.0, "wmae")
    (10.0, -10.0)
    >>> round(improvement_pct(0.9, 0.8, "roc_auc"), 6)
    12.5
    """
    if reference == 0:
        return 0.0 if value == reference else None
    if higher_is_better(metric, higher):
        return float((value - reference) / abs(reference) * 100.0)
    return float((reference - value) / reference * 100.0)


def compare(reports: Mapping[str, Report], metric: str, *,
            baselines: Collection[str] | None = None,
            higher: bool | None = None,
            failed: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """A leaderboard of ``reports`` by their overall ``metric``, best first.

    Each row: ``rank``, ``model``, ``is_baseline``, the metric value, ``n``,
    ``improvement_pct`` over ``reference`` (the best of ``baselines``; without
    ``baselines``, the best report) and ``error`` (None). Best is the lowest value, or the
    highest for metrics where higher is better (:func:`higher_is_better`). Ties keep name
    order. ``failed`` (model -> error) are models that could not be evaluated: they come
    last, unranked, with their error and no metric; a baseline among them is no reference
    (when every baseline failed, ``improvement_pct`` and ``reference`` are None).

    >>> reps = {"gbm": {"overall": {"wmae": 90.0, "n": 3}},
    ...         "naive": {"overall": {"wmae": 100.0, "n": 3}},
    ...         "mean": {"overall": {"wmae": 120.0, "n": 3}}}
    >>> for row in compare(reps, "wmae", baselines=["naive", "mean"],
    ...                    failed={"forest": "ModelError: no training rows"}):
    ...     print(row["rank"], row["model"], row["wmae"], row["improvement_pct"], row["error"])
    1 gbm 90.0 10.0 None
    2 naive 100.0 0.0 None
    3 mean 120.0 -20.0 None
    None forest None None ModelError: no training rows
    """
    if metric not in METRIC_NAMES and higher is None:
        raise ValueError(f"metric == {metric!r}, must be one of {sorted(METRIC_NAMES)}")
    if not reports:
        raise ValueError("reports is empty; compare needs at least one report")
    failed = dict(failed or {})
    both = sorted(set(reports) & set(failed))
    if both:
        raise ValueError(f"models {both} have both a report and an error")
    unknown = sorted(set(baselines or ()) - set(reports) - set(failed))
    if unknown:
        raise ValueError(f"baselines {unknown} are not among the reports {sorted(reports)}")
    values = {name: _overall(rep, metric, f"report {name!r}") for name, rep in reports.items()}
    up = higher_is_better(metric, higher)
    sign = -1.0 if up else 1.0
    order = sorted(values, key=lambda name: (sign * values[name], name))
    base = set(baselines or ())
    pool = [n for n in order if n in base] if baselines else order
    reference = pool[0] if pool else None
    rows = [{"rank": i, "model": name, "is_baseline": name in base,
             metric: values[name], "n": reports[name]["overall"].get("n"),
             "improvement_pct": None if reference is None else improvement_pct(
                 values[name], values[reference], metric, higher=up),
             "reference": reference, "error": None}
            for i, name in enumerate(order, start=1)]
    rows += [{"rank": None, "model": name, "is_baseline": name in base, metric: None,
              "n": None, "improvement_pct": None, "reference": reference, "error": error}
             for name, error in failed.items()]
    return rows


def _overall(report: Report, metric: str, who: str) -> float:
    """The overall ``metric`` of a report; ``who`` names the report in errors."""
    try:
        value = report["overall"][metric]
    except (KeyError, TypeError):
        raise ValueError(f"{who} has no overall {metric!r}; pass reports made "
                         "by evaluate()") from None
    if value is None:
        raise ValueError(f"{who}: overall {metric!r} is undefined")
    return float(value)
