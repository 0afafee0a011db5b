"""Baseline predictors, saved as JSON: constants (prior, majority, mean, median) and the
forecast baselines that look a value up per series (seasonal naive, series mean)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import ModelError
from cd4ml.registry.predictor_base import Predictor, file_of, meta_args

__all__ = ["ConstantPredictor", "SeriesBaselinePredictor", "SeasonalNaivePredictor",
           "SeriesMeanPredictor", "CONSTANT_KINDS"]

#: the baselines that answer one constant; the kind is the predictor's ``model_type``
CONSTANT_KINDS = ("prior", "majority", "mean", "median")


class ConstantPredictor(Predictor):
    """The same answer for every row: class probabilities (k,) or one value.

    >>> p = ConstantPredictor("prior", [0.25, 0.75], feature_names=["a"],
    ...                       task="classification", n_classes=2)
    >>> p.predict(np.zeros((2, 1))).tolist()
    [[0.25, 0.75], [0.25, 0.75]]
    """

    def __init__(self, kind: str, value: float | list[float], **kw: Any) -> None:
        self.model_type = kind
        super().__init__(**kw)
        if kind not in CONSTANT_KINDS:
            raise ModelError(f"constant baseline {kind!r}: must be one of {list(CONSTANT_KINDS)}")
        v = np.asarray(value, dtype=np.float64)
        want: tuple[int, ...] = (self.n_classes,) if self.n_classes is not None else ()
        if v.shape != want or not np.isfinite(v).all():
            raise ModelError(f"{kind}: needs {'one probability per class' if want else 'one'}"
                             f" finite value (shape {want}), got {value!r}: not fitted?")
        if want and abs(float(v.sum()) - 1.0) > 1e-9:
            raise ModelError(f"{kind}: class probabilities {value!r} do not sum to 1")
        self.value = v

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.value, (len(X), *self.value.shape)).copy()

    def to_files(self) -> dict[str, bytes]:
        return {"constant.json": json.dumps({"value": self.value.tolist()}).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> ConstantPredictor:
        body = json.loads(file_of(files, "constant.json", meta["type"]))
        return cls(meta["type"], body["value"], **meta_args(meta))


class SeriesBaselinePredictor(Predictor):
    """A statistic of the training target per series; where unknown, per group, then overall.

    ``series`` holds rows ``[*key values, statistic]`` per series; ``groups`` rows
    ``[group value, statistic]`` (e.g. per department). A subclass with a ``source``
    feature answers with that feature where it is known (seasonal naive).
    """

    statistic = ""  #: "median" or "mean": names the JSON fields and the fallback rules
    file = ""
    default_source: str | None = None  #: the feature answered first where it is known

    def __init__(self, *, feature_names: list[str], keys: list[str], group_key: str,
                 series: list[list[float]], groups: list[list[float]], overall: float,
                 source: str | None = None) -> None:
        super().__init__(feature_names=feature_names)
        source = source or self.default_source
        self.keys, self.group_key, self.source = list(keys), group_key, source
        self.series, self.groups, self.overall = series, groups, float(overall)
        idx = {n: i for i, n in enumerate(self.feature_names)}
        missing = [c for c in [*keys, group_key, *([source] if source else [])]
                   if c not in idx]
        if missing:
            raise ModelError(f"{self.model_type} needs feature(s) {missing} "
                             f"(set features.series_keys_as_features: true)")
        if not np.isfinite(self.overall):
            raise ModelError(f"{self.model_type}: overall {self.statistic} is "
                             f"{self.overall!r}: not fitted?")
        self._key_idx = [idx[k] for k in keys]
        self._group_idx = idx[group_key]
        self._src_idx = idx[source] if source else None
        sm = np.asarray(series, dtype=np.float64).reshape(-1, len(keys) + 1)
        self._series = pd.Series(sm[:, -1], index=pd.MultiIndex.from_arrays(
            [sm[:, i] for i in range(len(keys))]))
        gm = np.asarray(groups, dtype=np.float64).reshape(-1, 2)
        self._group = pd.Series(gm[:, 1], index=gm[:, 0])

    def _lookup(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X64 = X.astype(np.float64)
        src = (X64[:, self._src_idx] if self._src_idx is not None
               else np.full(len(X64), np.nan))
        ser = self._series.reindex(pd.MultiIndex.from_arrays(
            [X64[:, i] for i in self._key_idx])).to_numpy()
        grp = self._group.reindex(X64[:, self._group_idx]).to_numpy()
        return src, ser, grp

    def fallback_counts(self, X: np.ndarray) -> dict[str, int]:
        """How many rows each rule answered (stated in the gate report)."""
        src, ser, grp = self._lookup(X)
        known, s_ok, g_ok = ~np.isnan(src), ~np.isnan(ser), ~np.isnan(grp)
        st = self.statistic
        out = {"same_week_last_year": int(known.sum())} if self.source else {}
        return {**out, f"series_{st}": int((~known & s_ok).sum()),
                f"group_{st}": int((~known & ~s_ok & g_ok).sum()),
                f"global_{st}": int((~known & ~s_ok & ~g_ok).sum())}

    def _raw(self, X: np.ndarray) -> np.ndarray:
        src, ser, grp = self._lookup(X)
        fallback = np.where(np.isnan(ser), np.where(np.isnan(grp), self.overall, grp), ser)
        return np.where(np.isnan(src), fallback, src)

    def meta(self) -> dict[str, Any]:
        out = {**super().meta(), "keys": self.keys, "group_key": self.group_key}
        return {**out, "source": self.source} if self.source else out

    def to_files(self) -> dict[str, bytes]:
        st = self.statistic
        body = {f"series_{st}s": self.series, f"group_{st}s": self.groups,
                f"global_{st}": self.overall}
        return {self.file: json.dumps(body, sort_keys=True).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any],
                   ) -> SeriesBaselinePredictor:
        body, st = json.loads(file_of(files, cls.file, meta["type"])), cls.statistic
        return cls(feature_names=meta["feature_names"], keys=meta["keys"],
                   group_key=meta["group_key"], series=body[f"series_{st}s"],
                   groups=body[f"group_{st}s"], overall=body[f"global_{st}"],
                   source=meta.get("source"))


class SeasonalNaivePredictor(SeriesBaselinePredictor):
    """Same week last year (the ``seasonal_naive`` feature); where unknown, the series
    median of the training target, then the group median, then the overall median."""

    model_type = "seasonal_naive"
    statistic = "median"
    file = "medians.json"
    default_source = "seasonal_naive"


class SeriesMeanPredictor(SeriesBaselinePredictor):
    """The series mean of the training target; where unknown, the group mean, then the
    overall mean."""

    model_type = "series_mean"
    statistic = "mean"
    file = "means.json"
