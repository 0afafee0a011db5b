"""The one feature code path: the same function builds training rows and serving rows.

Every value derived from the target, and every ``observed`` covariate, is read at or
before ``d - horizon`` for the row of date ``d``; ``known_ahead`` covariates and the
calendar are read at ``d``. Category codes come from the spec (fixed at training time),
so serving never re-fits anything.

>>> import pandas as pd
>>> panel = pd.DataFrame({"s": [1] * 6, "t": pd.date_range("2020-01-03", periods=6, freq="7D"),
...                       "y": [1.0, 2.0, 3.0, 4.0, None, None]})
>>> spec = FeatureSpec(keys=["s"], time="t", target="y", horizon=2, lags=[2],
...                    seasonal_period=52, rolling_windows=[2], calendar=[])
>>> compute_features(panel, spec)["lag_2"].tolist()
[nan, nan, 1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import DataConfig, FeaturesConfig
from cd4ml.errors import DataError
from cd4ml.features.holidays import (ALIGNED_FEATURES, aligned_lags, holiday_feature_names,
                                     holiday_features)

__all__ = ["FeatureSpec", "compute_features", "spec_from_config", "to_grid"]


@dataclass(frozen=True)
class FeatureSpec:
    """Everything the feature code needs, fixed when a model is trained; JSON round-trips."""

    keys: list[str]
    time: str
    target: str
    horizon: int
    frequency_days: int = 7
    lags: list[int] = field(default_factory=list)
    seasonal_period: int = 52
    seasonal_years: int = 2
    rolling_windows: list[int] = field(default_factory=lambda: [4, 13, 52])
    rolling_stats: list[str] = field(default_factory=lambda: ["mean"])
    calendar: list[str] = field(default_factory=lambda: ["week", "month", "year"])
    covariates: dict[str, str] = field(default_factory=dict)
    static: list[str] = field(default_factory=list)
    categories: dict[str, list[Any]] = field(default_factory=dict)
    series_keys_as_features: bool = True
    holidays: list[str] = field(default_factory=list)
    holiday_dates: dict[str, list[str]] = field(default_factory=dict)  #: ISO dates
    holiday_window: int = 4
    period_label: str = "end"
    holiday_align_window: int = 2
    holiday_align: list[str] | None = None  #: None: every one of ``holidays``

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**d)

    @property
    def seasonal_lags(self) -> list[int]:
        """Whole years back (j * period) that are at least the horizon."""
        out, j = [], 1
        while len(out) < self.seasonal_years:
            if j * self.seasonal_period >= self.horizon:
                out.append(j * self.seasonal_period)
            j += 1
        return out

    @property
    def feature_names(self) -> list[str]:
        names = list(self.keys) if self.series_keys_as_features else []
        names += list(self.static)
        names += [f"cal_{c}" for c in self.calendar]
        names += holiday_feature_names(self.holidays, self.seasonal_lags[0])
        for c, mode in self.covariates.items():
            names.append(c if mode == "known_ahead" else f"{c}_lag{self.horizon}")
        names += [f"lag_{k}" for k in self.lags]
        names += ["seasonal_naive", "seasonal_mean", "seasonal_mean3"]
        names += list(ALIGNED_FEATURES) if self.holidays else []
        names += [f"roll_{s}_{w}" for w in self.rolling_windows for s in self.rolling_stats]
        names += [f"trend_{w}" for w in self.rolling_windows if w < self.seasonal_period]
        names += ["seasonal_baseline"]
        return names


def spec_from_config(data: DataConfig, feats: FeaturesConfig, panel: pd.DataFrame,
                     ) -> FeatureSpec:
    """Fix the spec for a training panel: category lists are taken from it, once."""
    cats: dict[str, list[Any]] = {}
    for c in feats.categorical:
        if c not in panel.columns:
            raise DataError(f"features.categorical: column {c!r} is not in the panel")
        vals = panel[c].dropna().unique().tolist()
        cats[c] = sorted(vals, key=str)
    return FeatureSpec(
        keys=list(data.series), time=data.time, target=data.target, horizon=feats.horizon,
        frequency_days=data.frequency_days, lags=sorted(set(feats.lags)),
        seasonal_period=feats.seasonal_period, seasonal_years=feats.seasonal_years,
        rolling_windows=list(feats.rolling_windows), rolling_stats=list(feats.rolling_stats),
        calendar=list(feats.calendar), covariates=dict(feats.covariates),
        static=list(feats.static), categories=cats,
        series_keys_as_features=feats.series_keys_as_features,
        holidays=list(feats.holidays), holiday_window=feats.holiday_window,
        holiday_align_window=feats.holiday_align_window,
        holiday_align=None if feats.holiday_align is None else list(feats.holiday_align),
        holiday_dates={h: [d.isoformat() for d in days]
                       for h, days in feats.holiday_dates.items() if h in feats.holidays},
        period_label=feats.period_label)


def to_grid(panel: pd.DataFrame, spec: FeatureSpec) -> tuple[int, int]:
    """(series, dates) of a dense panel sorted by keys then time; raises if it is not."""
    n = len(panel)
    if n == 0:
        raise DataError("the panel is empty")
    times = panel[spec.time].to_numpy()
    n_series = int((times == times[0]).sum())
    n_dates = n // n_series
    if n_series * n_dates != n or not (times.reshape(n_series, n_dates) == times[:n_dates]).all():
        raise DataError("the panel is not dense: every series needs every date, sorted by "
                        "series keys then time")
    return n_series, n_dates


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if k < a.shape[1]:
        out[:, k:] = a[:, : a.shape[1] - k]
    return out


def _aligned(y: np.ndarray, dates: pd.DatetimeIndex, spec: FeatureSpec, naive: np.ndarray,
             mean3: np.ndarray) -> dict[str, np.ndarray]:
    """``seasonal_naive_aligned``: last year's value at the same distance in days from the
    nearest holiday (``holidays.aligned_lags``; a fractional lag mixes the two weeks it
    falls between), where that lag is at least the horizon and the value is known, else
    ``seasonal_naive``; ``seasonal_mean3_aligned``: that value near a holiday, else
    ``seasonal_mean3``."""
    align = spec.holidays if spec.holiday_align is None else spec.holiday_align
    lags = aligned_lags(dates, align, frequency_days=spec.frequency_days,
                        period_label=spec.period_label, window=spec.holiday_align_window,
                        lag=spec.seasonal_lags[0], table=spec.holiday_dates)
    aligned = naive.copy()
    near = np.zeros(len(dates), dtype=bool)
    for lag in np.unique(lags[np.isfinite(lags)]):
        lo = int(np.floor(lag))
        if lo < spec.horizon:  # would read a value not known when forecasting
            continue
        cols = np.flatnonzero(lags == lag)
        a = _shift(y, lo)[:, cols]
        frac = float(lag - lo)
        if frac > 0:
            b = _shift(y, lo + 1)[:, cols]
            a = np.where(np.isnan(b), a, (1 - frac) * a + frac * b)
        aligned[:, cols] = np.where(np.isnan(a), naive[:, cols], a)
        near[cols] = True
    mixed = np.where(near[None, :] & ~np.isnan(aligned), aligned, mean3)
    return {"seasonal_naive_aligned": aligned, "seasonal_mean3_aligned": mixed}


def _rolling(a: np.ndarray, w: int, stat: str) -> np.ndarray:
    frame = pd.DataFrame(a.T)
    roll = frame.rolling(w, min_periods=2 if stat == "std" else 1)
    return getattr(roll, stat)().to_numpy().T


def _nanmean(arrs: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    if not arrs:
        return np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(arrs), axis=0)


def _calendar(dates: pd.DatetimeIndex, part: str) -> np.ndarray:
    if part == "week":
        return dates.isocalendar().week.to_numpy(dtype=float)
    if part == "week_of_month":
        return ((dates.day - 1) // 7 + 1).to_numpy(dtype=float)
    attr = {"month": "month", "year": "year", "quarter": "quarter", "day_of_year": "dayofyear"}
    return np.asarray(getattr(dates, attr[part]), dtype=float)


def _encode(values: pd.Series, categories: list[Any] | None) -> np.ndarray:
    if categories is not None:
        codes = {v: i for i, v in enumerate(categories)}
        return values.map(codes).to_numpy(dtype=float, na_value=np.nan)
    if values.dtype == bool or str(values.dtype) == "boolean":
        return values.astype("float64").to_numpy(dtype=float, na_value=np.nan)
    try:
        return pd.to_numeric(values).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataError(f"column {values.name!r} is not numeric; declare it in "
                        f"features.categorical") from None


def compute_features(panel: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Features for every row of a dense panel (sorted by keys then time), same row order."""
    n_series, n_dates = to_grid(panel, spec)
    shape = (n_series, n_dates)
    h = spec.horizon
    y = pd.to_numeric(panel[spec.target]).to_numpy(dtype=float, na_value=np.nan).reshape(shape)
    dates = pd.DatetimeIndex(panel[spec.time].iloc[:n_dates])
    out: dict[str, np.ndarray] = {}

    def col(name: str) -> np.ndarray:
        return _encode(panel[name], spec.categories.get(name)).reshape(shape)

    if spec.series_keys_as_features:
        for k in spec.keys:
            out[k] = col(k)
    for c in spec.static:
        out[c] = col(c)
    for part in spec.calendar:
        out[f"cal_{part}"] = np.broadcast_to(_calendar(dates, part), shape)
    if spec.holidays:
        hol = holiday_features(dates, spec.holidays, frequency_days=spec.frequency_days,
                               period_label=spec.period_label, window=spec.holiday_window,
                               lag=spec.seasonal_lags[0], table=spec.holiday_dates)
        out.update({n: np.broadcast_to(v, shape) for n, v in hol.items()})
    for c, mode in spec.covariates.items():
        if mode == "known_ahead":
            out[c] = col(c)
        else:
            out[f"{c}_lag{h}"] = _shift(col(c), h)
    for k in spec.lags:
        out[f"lag_{k}"] = _shift(y, k)
    p, seas = spec.seasonal_period, spec.seasonal_lags
    out["seasonal_naive"] = _shift(y, seas[0])
    out["seasonal_mean"] = _nanmean([_shift(y, k) for k in seas], shape)
    near = [k + d for k in seas for d in (-1, 0, 1) if k + d >= h]
    out["seasonal_mean3"] = _nanmean([_shift(y, k) for k in near], shape)
    if spec.holidays:
        out.update(_aligned(y, dates, spec, out["seasonal_naive"], out["seasonal_mean3"]))
    known = _shift(y, h)  # the latest value known when forecasting d
    for w in spec.rolling_windows:
        for s in spec.rolling_stats:
            out[f"roll_{s}_{w}"] = _rolling(known, w, s)
    for w in spec.rolling_windows:
        if w < p:
            now = out.get(f"roll_mean_{w}")
            now = now if now is not None else _rolling(known, w, "mean")
            before = _shift(now, p)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"trend_{w}"] = np.where(np.abs(before) >= 1.0, now / before, np.nan)
    level = _rolling(known, max(spec.rolling_windows), "mean") if spec.rolling_windows \
        else np.full(shape, np.nan)
    sm = out["seasonal_mean"]
    out["seasonal_baseline"] = np.where(np.isnan(sm), level, sm)
    names = spec.feature_names
    return pd.DataFrame({n: np.asarray(out[n], dtype=np.float32).ravel() for n in names},
                        index=panel.index)
