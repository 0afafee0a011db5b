"""Fit a model spec on a feature frame; the result is a :class:`Predictor` (no pickle).

Seeded and deterministic: the same data, params and seed give the same model bytes.
Heavy libraries (LightGBM, scikit-learn) are imported only here, when a fit happens.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import ModelSpec
from cd4ml.errors import MissingExtraError, ModelError
from cd4ml.registry.predictors import (SKLEARN_ADAPTERS, LightGBMPredictor, Predictor,
                                       SeasonalNaivePredictor, SklearnPredictor)

__all__ = ["fit_model", "DEFAULTS"]

#: Defaults per model type; config params override them. Sizes are capped so a cold run
#: on the full Walmart data stays fast on two cores.
DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {"objective": "l1", "n_estimators": 400, "learning_rate": 0.05,
                 "num_leaves": 63, "min_child_samples": 20, "subsample": 0.8,
                 "subsample_freq": 1, "colsample_bytree": 0.8, "n_jobs": 2},
    "random_forest": {"n_estimators": 10, "max_depth": 20, "min_samples_leaf": 5,
                      "max_features": 0.5, "n_jobs": 2},
    "decision_tree": {"max_depth": 12, "min_samples_leaf": 20},
    "seasonal_naive": {},
}
_OURS = {"target_offset", "categorical", "fit_rows", "group_key"}


def _import(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(what, "ml", module.split(".")[0]) from None


def _rows(X: pd.DataFrame, y: np.ndarray, offset: str | None, fit_rows: str) -> np.ndarray:
    ok = ~np.isnan(y)
    if offset is not None and fit_rows == "offset_known":
        ok &= ~np.isnan(X[offset].to_numpy())
    if fit_rows not in ("offset_known", "all"):
        raise ModelError(f"fit_rows = {fit_rows!r}: must be 'offset_known' or 'all'")
    return ok


def fit_model(spec: ModelSpec, X: pd.DataFrame, y: np.ndarray, w: np.ndarray | None = None,
              *, seed: int = 0, keys: list[str] | None = None) -> Predictor:
    """Fit ``spec`` on features ``X`` (columns = feature names), target ``y``, weights ``w``."""
    params = {**DEFAULTS.get(spec.type, {}), **spec.params}
    names = list(X.columns)
    offset = params.get("target_offset")
    if offset is not None and offset not in names:
        raise ModelError(f"models.{spec.name}.params.target_offset = {offset!r}: not a "
                         f"feature; features: {names}")
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    ok = _rows(X, y, offset, params.get("fit_rows", "offset_known"))
    if not ok.any():
        raise ModelError(f"model {spec.name!r}: no training rows with a known target")
    Xf = X.to_numpy(dtype=np.float32)[ok]
    base = np.nan_to_num(X[offset].to_numpy(dtype=np.float64)[ok]) if offset else 0.0
    yt, wt = y[ok] - base, w[ok]
    kw = {k: v for k, v in params.items() if k not in _OURS}
    if spec.type == "lightgbm":
        return _fit_lightgbm(spec, Xf, yt, wt, names, kw, seed, offset,
                             params.get("categorical") or [])
    if spec.type in SKLEARN_ADAPTERS:
        return _fit_sklearn(spec, Xf, yt, wt, names, kw, seed, offset)
    if spec.type == "seasonal_naive":
        keys = keys or []
        group = params.get("group_key", keys[-1] if keys else None)
        return _fit_seasonal_naive(X[ok], y[ok], names, keys, group)
    raise ModelError(f"models.{spec.name}.type = {spec.type!r}: cannot be fitted here")


def _fit_lightgbm(spec: ModelSpec, X: np.ndarray, y: np.ndarray, w: np.ndarray,
                  names: list[str], kw: dict[str, Any], seed: int, offset: str | None,
                  categorical: list[str]) -> Predictor:
    lgb = _import("lightgbm", "LightGBM models")
    bad = [c for c in categorical if c not in names]
    if bad:
        raise ModelError(f"models.{spec.name}.params.categorical: {bad} are not features")
    kw = {"random_state": seed, "deterministic": True, "force_row_wise": True,
          "verbose": -1, **kw}
    try:
        model = lgb.LGBMRegressor(**kw)
        model.fit(X, y, sample_weight=w, feature_name=names,
                  categorical_feature=categorical or "auto")
    except Exception as exc:
        # LightGBM's own error class is not exported by the package: know it by its module
        if not isinstance(exc, (TypeError, ValueError)) and \
                not type(exc).__module__.startswith("lightgbm"):
            raise
        raise ModelError(f"models.{spec.name}: LightGBM could not fit: {exc}") from None
    return LightGBMPredictor(model.booster_, feature_names=names, target_offset=offset)


def _fit_sklearn(spec: ModelSpec, X: np.ndarray, y: np.ndarray, w: np.ndarray,
                 names: list[str], kw: dict[str, Any], seed: int,
                 offset: str | None) -> Predictor:
    cls = SKLEARN_ADAPTERS[spec.type].estimator_class()
    allowed = set(inspect.signature(cls).parameters)
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ModelError(f"models.{spec.name}.params: unknown parameter(s) {unknown} for "
                         f"{cls.__name__}; allowed: {sorted(allowed)}")
    try:
        est = cls(random_state=seed, **kw).fit(X, y, sample_weight=w)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"models.{spec.name}: {cls.__name__} could not fit: {exc}") from None
    if "n_jobs" in allowed:  # predict in one thread: same sums in the same order, every time
        est.set_params(n_jobs=None)
    return SklearnPredictor(est, feature_names=names, target_offset=offset)


def _fit_seasonal_naive(X: pd.DataFrame, y: np.ndarray, names: list[str], keys: list[str],
                        group: str | None) -> Predictor:
    if not keys or group is None:
        raise ModelError("seasonal_naive needs the series keys")
    frame = X[keys].astype(np.float64).assign(_y=y)
    ser = frame.groupby(keys, sort=True)["_y"].median().reset_index()
    grp = frame.groupby(group, sort=True)["_y"].median().reset_index()
    return SeasonalNaivePredictor(
        feature_names=names, keys=keys, group_key=group,
        series_medians=ser.to_numpy(dtype=float).tolist(),
        group_medians=grp[[group, "_y"]].to_numpy(dtype=float).tolist(),
        global_median=float(np.median(y)))
