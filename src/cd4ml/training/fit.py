"""Fit a model spec on a feature frame; the result is a :class:`Predictor` (no pickle).

The spec's type is looked up in :data:`cd4ml.training.adapters.ADAPTERS` for the task;
the rows are checked here once per task kind, then the adapter's fit function runs.
Seeded and deterministic: the same data, params and seed give the same model bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import ModelSpec
from cd4ml.errors import ModelError
from cd4ml.registry.predictors import Predictor
from cd4ml.training.adapters import adapter_for
from cd4ml.training.fitdata import FitData, check_metric_weights
from cd4ml.training.recency import HALF_LIFE, recency_weights

__all__ = ["fit_model", "fit_failure"]


def fit_failure(exc: ModelError) -> str:
    """A model that could not be fitted, as one line for reports (a library's message may
    span several)."""
    return " ".join(str(exc).split())


def fit_model(spec: ModelSpec, X: pd.DataFrame, y: np.ndarray, w: np.ndarray | None = None,
              *, seed: int = 0, task: str = "forecast", keys: list[str] | None = None,
              categorical: dict[str, int] | None = None, classes: list | None = None,
              times: Any = None) -> Predictor:
    """Fit ``spec`` on features ``X`` (columns = feature names), target ``y``, weights ``w``.

    Classification: ``y`` holds class indices 0..k-1 (k = ``len(classes)``) and the
    predictor answers (n, k) probabilities. Tabular tasks: the ``categorical`` columns
    hold codes 0..n-1 (n = ``categorical[name]``). ``times`` (one per row) age the rows
    for a spec with ``params.recency_half_life`` (:mod:`cd4ml.training.recency`): ``w``
    is multiplied by the recency weights, counted back from the latest of ``times``.
    ``params.metric_weights: false`` fits every row with weight 1 instead of ``w`` (the
    evaluation's row weights, e.g. a holiday week's 5), before any recency weight.
    """
    adapter = adapter_for(str(spec.type), task, where=f"models.{spec.name}.type")
    n_classes = len(classes) if classes is not None else None
    params = {**adapter.defaults(task, n_classes), **spec.params}
    y = np.asarray(y)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    if not len(X) == len(y) == len(w):
        raise ModelError(f"model {spec.name!r}: {len(X)} feature rows, {len(y)} targets, "
                         f"{len(w)} weights: they must be the same length")
    if not check_metric_weights(params.get("metric_weights", True),
                                where=f"models.{spec.name}.params.metric_weights"):
        # the metric still weighs its rows; the loss counts each once
        w = np.ones(len(y))
    if params.get(HALF_LIFE) is not None:
        w = w * _recency(spec, adapter.weighted, times, len(y), params[HALF_LIFE])
    _check_codes(spec.name, X, categorical)
    rows = _ROWS[task](spec.name, params, X, y, w, classes)
    data = FitData(name=spec.name, params=params, seed=seed, task=task,
                   keys=tuple(keys or ()), categorical=dict(categorical or {}),
                   n_classes=n_classes, estimator=adapter.task_fit(task).estimator, **rows)
    return adapter.task_fit(task).fit(data)


def _recency(spec: ModelSpec, weighted: bool, times: Any, n: int, half_life: Any,
             ) -> np.ndarray:
    where = f"models.{spec.name}.params.{HALF_LIFE}"
    if not weighted:
        raise ModelError(f"{where}: {spec.type} does not take sample weights")
    if times is None or len(times) != n:
        raise ModelError(f"{where}: needs each training row's time to age it by "
                         f"({'none' if times is None else len(times)} for {n} rows)")
    return recency_weights(times, half_life=half_life, where=where)


def _check_codes(name: str, X: pd.DataFrame, categorical: dict[str, int] | None) -> None:
    for col, n in (categorical or {}).items():
        if col not in X.columns:
            raise ModelError(f"model {name!r}: categorical column {col!r} is not a feature; "
                             f"features: {list(X.columns)}")
        v = X[col].to_numpy(dtype=np.float64)
        v = v[~np.isnan(v)]
        bad = v[(v != np.round(v)) | (v < 0) | (v >= n)]
        if len(bad):
            raise ModelError(f"model {name!r}: categorical {col} = {float(bad[0])!r}: expected a "
                             f"code 0..{n - 1} ({n} codes)")


def _offset_rows(name: str, params: dict[str, Any], X: pd.DataFrame, y: np.ndarray,
                 w: np.ndarray, classes: list | None) -> dict[str, Any]:
    """Forecast, regression: rows with a known target (and offset, unless ``fit_rows:
    all``); the model learns the target less the ``target_offset`` feature."""
    if classes is not None:
        raise ModelError(f"model {name!r}: classes {classes!r} given; they are for "
                         f"classification")
    names = list(X.columns)
    offset = params.get("target_offset")
    if offset is not None and offset not in names:
        raise ModelError(f"models.{name}.params.target_offset = {offset!r}: not a "
                         f"feature; features: {names}")
    y = y.astype(np.float64)
    fit_rows = params.get("fit_rows", "offset_known")
    if fit_rows not in ("offset_known", "all"):
        raise ModelError(f"fit_rows = {fit_rows!r}: must be 'offset_known' or 'all'")
    ok = ~np.isnan(y)
    if offset is not None and fit_rows == "offset_known":
        ok &= ~np.isnan(X[offset].to_numpy())
    if not ok.any():
        why = "" if offset is None or fit_rows == "all" or np.isnan(y).all() else (
            f" and target_offset {offset!r} (fit_rows: offset_known): {offset} is missing "
            f"on all {int((~np.isnan(y)).sum())} rows with a known target")
        raise ModelError(f"model {name!r}: no training rows with a known target{why}")
    base = np.nan_to_num(X[offset].to_numpy(dtype=np.float64)[ok]) if offset else 0.0
    return {"X": X[ok], "y": y[ok], "w": w[ok], "base": base, "offset": offset}


def _class_rows(name: str, params: dict[str, Any], X: pd.DataFrame, y: np.ndarray,
                w: np.ndarray, classes: list | None) -> dict[str, Any]:
    """Classification: every row, its target a class index 0..k-1 (k = len(classes))."""
    if classes is None or len(classes) < 2:
        raise ModelError(f"model {name!r}: classification needs its classes (at least "
                         f"2), got {classes!r}")
    k = len(classes)
    if params.get("target_offset") is not None:
        raise ModelError(f"models.{name}.params.target_offset: not for classification")
    if len(y) == 0:
        raise ModelError(f"model {name!r}: no training rows")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ModelError(f"model {name!r}: the target holds {y.dtype} values; expected "
                         f"class indices 0..{k - 1} (of classes {classes!r})")
    yf = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(yf) | (yf != np.round(yf)) | (yf < 0) | (yf >= k))
    if len(bad):
        value = y[bad[0]].item() if isinstance(y[bad[0]], np.generic) else y[bad[0]]
        raise ModelError(f"model {name!r}: target row {int(bad[0])} = {value!r}: "
                         f"expected a class index 0..{k - 1} ({len(bad)} such rows)")
    return {"X": X, "y": yf.astype(np.int64), "w": w}


#: task -> how its training rows are checked and chosen
_ROWS = {"forecast": _offset_rows, "regression": _offset_rows, "classification": _class_rows}
