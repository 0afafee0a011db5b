"""Fitted models as predictors: predict on a feature matrix, save to bytes without pickle.

Training fits them (``cd4ml.training``); serving and evaluation only load and predict,
so every prediction, at evaluation time and in production, goes through this code.
LightGBM models are saved in LightGBM's text format, scikit-learn models with skops,
baselines as JSON.
"""

from __future__ import annotations

import threading

import json
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import MissingExtraError, ModelError

__all__ = ["Predictor", "LightGBMPredictor", "SklearnPredictor", "SeasonalNaivePredictor",
           "load_predictor", "PREDICTORS"]

_SKLEARN_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


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

    #: below this many rows, rows go one by one through LightGBM's single-row fast path
    FAST_ROWS = 64

    def __init__(self, booster: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.booster = booster
        self._fast: Any = None
        self._fast_lock = threading.Lock()

    def _fast_handle(self) -> Any:
        """LightGBM's ``PredictForMatSingleRowFast`` config, made once per booster.

        ``Booster.predict`` sets up a predictor on every call (~200 µs for this model,
        whatever the number of trees); the fast single-row C API does it once. Outputs
        are identical (tested).
        """
        if self._fast is None:
            import ctypes

            from lightgbm.basic import _LIB, _safe_call

            handle = ctypes.c_void_p()
            _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self.booster._handle, ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(-1),
                ctypes.c_int(0), ctypes.c_int32(len(self.feature_names)),
                ctypes.c_char_p(b"num_threads=1"), ctypes.byref(handle)))
            self._fast = (handle, _LIB, _safe_call, ctypes)
        return self._fast

    def _raw(self, X: np.ndarray) -> np.ndarray:
        if len(X) >= self.FAST_ROWS or X.dtype != np.float32 or X.ndim != 2:
            return self.booster.predict(X, num_threads=1 if len(X) < 1000 else 0)
        handle, lib, safe_call, ctypes = self._fast_handle()
        X = np.ascontiguousarray(X)
        out = np.empty(len(X), dtype=np.float64)
        n = ctypes.c_int64(0)
        res = ctypes.c_double(0.0)
        stride = X.strides[0]
        base = X.ctypes.data
        with self._fast_lock:  # the fast config holds buffers: one caller at a time
            for i in range(len(X)):
                safe_call(lib.LGBM_BoosterPredictForMatSingleRowFast(
                    handle, ctypes.c_void_p(base + i * stride), ctypes.byref(n),
                    ctypes.byref(res)))
                out[i] = res.value
        return out

    def __del__(self) -> None:
        if getattr(self, "_fast", None) is not None:
            handle, lib, _, _ = self._fast
            try:
                lib.LGBM_FastConfigFree(handle)
            except Exception:  # interpreter shutting down
                pass

    def to_files(self) -> dict[str, bytes]:
        return {"model.txt": self.booster.model_to_string().encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> LightGBMPredictor:
        lgb = _import("lightgbm", "LightGBM models", "ml")
        booster = lgb.Booster(model_str=files["model.txt"].decode())
        return cls(booster, feature_names=meta["feature_names"],
                   target_offset=meta.get("target_offset"))


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
        data = files["model.skops"]
        types = sio.get_untrusted_types(data=data)
        bad = [t for t in types if not t.startswith(_SKLEARN_TRUSTED_PREFIXES)]
        if bad:
            raise ModelError(f"refusing to load a skops file with untrusted types {bad}")
        est = sio.loads(data, trusted=types)
        return cls(est, feature_names=meta["feature_names"],
                   target_offset=meta.get("target_offset"))


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
