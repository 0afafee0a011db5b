"""Fitted models as predictors: predict on a feature matrix, save to bytes without pickle.

Training fits them (``cd4ml.training``); serving and evaluation only load and predict,
so every prediction, at evaluation time and in production, goes through this code.
LightGBM models are saved in LightGBM's text format, scikit-learn models with skops
(loading only the types their adapter in :data:`SKLEARN_ADAPTERS` declares), baselines
as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import MissingExtraError, ModelError

__all__ = ["Predictor", "LightGBMPredictor", "SklearnPredictor", "SeasonalNaivePredictor",
           "SklearnAdapter", "SKLEARN_ADAPTERS", "skops_allowed_types", "load_predictor",
           "PREDICTORS"]


class Predictor:
    """Base: ``predict(X)`` on a float matrix whose columns are ``feature_names``."""

    model_type: str = ""

    def __init__(self, *, feature_names: list[str], target_offset: str | None = None) -> None:
        self.feature_names = list(feature_names)
        self.target_offset = target_offset
        self._offset_idx = (self.feature_names.index(target_offset)
                            if target_offset is not None else None)

    def offset(self, X: np.ndarray) -> np.ndarray | float:
        """The part of the prediction the model does not learn (0 where unknown)."""
        if self._offset_idx is None:
            return 0.0
        v = X[:, self._offset_idx].astype(np.float64)
        v[np.isnan(v)] = 0.0
        return v

    def _raw(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ModelError(f"{self.model_type}: expected a matrix of "
                             f"{len(self.feature_names)} features, got shape {X.shape}")
        return np.asarray(self._raw(X), dtype=np.float64) + self.offset(X)

    def meta(self) -> dict[str, Any]:
        return {"type": self.model_type, "feature_names": self.feature_names,
                "target_offset": self.target_offset}

    def to_files(self) -> dict[str, bytes]:
        raise NotImplementedError


class LightGBMPredictor(Predictor):
    model_type = "lightgbm"

    def __init__(self, booster: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.booster = booster

    def _raw(self, X: np.ndarray) -> np.ndarray:
        # LightGBM's public API only. One thread below 1,000 rows, where starting threads
        # costs more than it saves. A 1-row call costs ~65 µs with 400 trees (~30 µs
        # through the private single-row C API this replaced; measured with
        # benchmarks/lightgbm_single_row.py); it matters only when the server cannot
        # answer from the forecast table (serving.forecast_table: false).
        return self.booster.predict(X, num_threads=1 if len(X) < 1000 else 0)

    def to_files(self) -> dict[str, bytes]:
        return {"model.txt": self.booster.model_to_string().encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> LightGBMPredictor:
        lgb = _import("lightgbm", "LightGBM models", "ml")
        booster = lgb.Booster(model_str=files["model.txt"].decode())
        return cls(booster, feature_names=meta["feature_names"],
                   target_offset=meta.get("target_offset"))


@dataclass(frozen=True, slots=True)
class SklearnAdapter:
    """A scikit-learn model type cd4ml trains, and the skops types its saved files hold.

    ``skops_types`` is what ``skops.io.get_untrusted_types`` reports for a fitted model
    of this type (the types beyond skops' own defaults), written down here, never read
    from the file being loaded. A test fits each adapter and checks the list is exact.
    """

    model_type: str  #: the config's ``models.*.type``
    estimator: str  #: import path of the estimator class
    skops_types: tuple[str, ...]

    def estimator_class(self) -> type:
        module, _, name = self.estimator.rpartition(".")
        return getattr(_import(module, "scikit-learn models", "ml"), name)  # type: ignore[no-any-return]


#: every scikit-learn model type cd4ml trains; a new one is added here, with its list
SKLEARN_ADAPTERS: dict[str, SklearnAdapter] = {a.model_type: a for a in [
    SklearnAdapter("random_forest", "sklearn.ensemble.RandomForestRegressor",
                   ("sklearn.tree._tree.Tree",)),
    SklearnAdapter("decision_tree", "sklearn.tree.DecisionTreeRegressor",
                   ("sklearn.tree._tree.Tree",)),
]}


def skops_allowed_types() -> list[str]:
    """The types a skops file may hold beyond skops' defaults: the adapters' union.

    >>> skops_allowed_types()
    ['sklearn.tree._tree.Tree']
    """
    return sorted({t for a in SKLEARN_ADAPTERS.values() for t in a.skops_types})


class SklearnPredictor(Predictor):
    model_type = "sklearn"

    def __init__(self, estimator: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.estimator = estimator

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict(X)

    def to_files(self) -> dict[str, bytes]:
        sio = _import("skops.io", "scikit-learn models", "ml")
        return {"model.skops": sio.dumps(self.estimator)}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> SklearnPredictor:
        sio = _import("skops.io", "scikit-learn models", "ml")
        est = _load_skops(sio, files["model.skops"])
        return cls(est, feature_names=meta["feature_names"],
                   target_offset=meta.get("target_offset"))


def _load_skops(sio: Any, data: bytes) -> Any:
    """Load a skops file holding only declared types; nothing in it runs before the check."""
    allowed = skops_allowed_types()
    try:
        found = sio.get_untrusted_types(data=data)  # reads the schema, constructs nothing
    except Exception as exc:  # not a zip, bad JSON, a loader skops does not know, ...
        raise ModelError(f"model.skops cannot be read: {type(exc).__name__}: {exc}") from None
    refused = sorted(set(found) - set(allowed))
    if refused:
        raise ModelError(f"refusing to load model.skops: it holds type(s) {refused} that no "
                         f"scikit-learn adapter declares; allowed beyond skops' defaults: "
                         f"{allowed} (SKLEARN_ADAPTERS in cd4ml.registry.predictors)")
    try:
        est = sio.loads(data, trusted=allowed)
    except Exception as exc:
        raise ModelError(f"model.skops cannot be loaded: {type(exc).__name__}: {exc}") from None
    known = tuple(a.estimator_class() for a in SKLEARN_ADAPTERS.values())
    if not isinstance(est, known):
        raise ModelError(f"model.skops holds a {type(est).__module__}.{type(est).__qualname__}"
                         f", not one of the adapters' estimators "
                         f"{[a.estimator for a in SKLEARN_ADAPTERS.values()]}")
    return est


class SeasonalNaivePredictor(Predictor):
    """Same week last year; where unknown, the series median, then the group median.

    ``series_medians`` holds rows ``[*key values, median]`` of the training target per
    series; ``group_medians`` rows ``[group value, median]`` (e.g. per department).
    """

    model_type = "seasonal_naive"

    def __init__(self, *, feature_names: list[str], keys: list[str], group_key: str,
                 series_medians: list[list[float]], group_medians: list[list[float]],
                 global_median: float, source: str = "seasonal_naive") -> None:
        super().__init__(feature_names=feature_names)
        self.keys, self.group_key, self.source = list(keys), group_key, source
        self.series_medians, self.group_medians = series_medians, group_medians
        self.global_median = float(global_median)
        idx = {n: i for i, n in enumerate(self.feature_names)}
        missing = [c for c in [*keys, group_key, source] if c not in idx]
        if missing:
            raise ModelError(f"seasonal_naive needs feature(s) {missing} "
                             f"(set features.series_keys_as_features: true)")
        self._key_idx = [idx[k] for k in keys]
        self._group_idx = idx[group_key]
        self._src_idx = idx[source]
        sm = np.asarray(series_medians, dtype=np.float64).reshape(-1, len(keys) + 1)
        self._series = pd.Series(sm[:, -1], index=pd.MultiIndex.from_arrays(
            [sm[:, i] for i in range(len(keys))]))
        gm = np.asarray(group_medians, dtype=np.float64).reshape(-1, 2)
        self._group = pd.Series(gm[:, 1], index=gm[:, 0])

    def _lookup(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X64 = X.astype(np.float64)
        src = X64[:, self._src_idx]
        ser = self._series.reindex(pd.MultiIndex.from_arrays(
            [X64[:, i] for i in self._key_idx])).to_numpy()
        grp = self._group.reindex(X64[:, self._group_idx]).to_numpy()
        return src, ser, grp

    def fallback_counts(self, X: np.ndarray) -> dict[str, int]:
        """How many rows each rule answered (stated in the gate report)."""
        src, ser, grp = self._lookup(X)
        known, s_ok, g_ok = ~np.isnan(src), ~np.isnan(ser), ~np.isnan(grp)
        return {"same_week_last_year": int(known.sum()),
                "series_median": int((~known & s_ok).sum()),
                "group_median": int((~known & ~s_ok & g_ok).sum()),
                "global_median": int((~known & ~s_ok & ~g_ok).sum())}

    def _raw(self, X: np.ndarray) -> np.ndarray:
        src, ser, grp = self._lookup(X)
        fallback = np.where(np.isnan(ser), np.where(np.isnan(grp), self.global_median, grp), ser)
        return np.where(np.isnan(src), fallback, src)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "keys": self.keys, "group_key": self.group_key,
                "source": self.source}

    def to_files(self) -> dict[str, bytes]:
        body = {"series_medians": self.series_medians, "group_medians": self.group_medians,
                "global_median": self.global_median}
        return {"medians.json": json.dumps(body, sort_keys=True).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any],
                   ) -> SeasonalNaivePredictor:
        body = json.loads(files["medians.json"])
        return cls(feature_names=meta["feature_names"], keys=meta["keys"],
                   group_key=meta["group_key"], source=meta.get("source", "seasonal_naive"),
                   series_medians=body["series_medians"], group_medians=body["group_medians"],
                   global_median=body["global_median"])


PREDICTORS: dict[str, type[Predictor]] = {
    "lightgbm": LightGBMPredictor,
    "sklearn": SklearnPredictor,
    "seasonal_naive": SeasonalNaivePredictor,
}


def load_predictor(files: dict[str, bytes], meta: dict[str, Any]) -> Predictor:
    cls = PREDICTORS.get(meta.get("type", ""))
    if cls is None:
        raise ModelError(f"unknown predictor type {meta.get('type')!r}; "
                         f"known: {sorted(PREDICTORS)}")
    return cls.from_files(files, meta)  # type: ignore[attr-defined]


def _import(module: str, what: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(what, extra, module.split(".")[0]) from None
