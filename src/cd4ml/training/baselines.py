"""Fit functions of the baselines: statistics of the training target, saved as JSON.

Weighted where the rows carry weights (:func:`fit_prior`, :func:`fit_majority`,
:func:`fit_mean`, :func:`fit_median`; equal weights give the plain statistic); the
forecast baselines use the plain per-series statistics.
"""

from __future__ import annotations

import numpy as np

from cd4ml.errors import ModelError
from cd4ml.registry.predictors import (ConstantPredictor, Predictor, SeasonalNaivePredictor,
                                       SeriesMeanPredictor)
from cd4ml.training.fitdata import FitData

__all__ = ["fit_prior", "fit_majority", "fit_mean", "fit_median", "fit_seasonal_naive",
           "fit_seasonal_naive_aligned",
           "fit_series_mean", "weighted_median"]


def _shares(d: FitData) -> np.ndarray:
    k = d.n_classes or 0
    counts = np.bincount(d.y, weights=d.w, minlength=k)
    return counts / counts.sum()


def fit_prior(d: FitData) -> Predictor:
    """Every row gets the training rows' (weighted) class shares."""
    return ConstantPredictor("prior", _shares(d).tolist(), **d.predictor_args())


def fit_majority(d: FitData) -> Predictor:
    """Probability 1 for the most frequent training class (ties: the lowest index)."""
    onehot = np.zeros(d.n_classes or 0)
    onehot[int(np.argmax(_shares(d)))] = 1.0
    return ConstantPredictor("majority", onehot.tolist(), **d.predictor_args())


def fit_mean(d: FitData) -> Predictor:
    value = float(np.average(d.target(), weights=d.w))
    return ConstantPredictor("mean", value, **d.predictor_args())


def weighted_median(y: np.ndarray, w: np.ndarray) -> float:
    """The median of ``y``; with unequal weights, the smallest value whose cumulative
    weight reaches half the total (scikit-learn's DummyRegressor does the same).

    >>> weighted_median(np.array([1.0, 2.0, 3.0, 10.0]), np.ones(4))
    2.5
    >>> weighted_median(np.array([1.0, 2.0, 3.0, 10.0]), np.array([1.0, 1.0, 1.0, 3.0]))
    3.0
    """
    if np.all(w == w[0]):
        return float(np.median(y))
    order = np.argsort(y, kind="stable")
    cum = np.cumsum(w[order])
    return float(y[order][np.searchsorted(cum, 0.5 * cum[-1])])


def fit_median(d: FitData) -> Predictor:
    value = weighted_median(d.target(), d.w)
    return ConstantPredictor("median", value, **d.predictor_args())


def _series_stats(d: FitData, stat: str, kind: str) -> tuple[list[str], str, dict[str, object]]:
    """Per series and per group (``params.group_key``, default the last key) ``stat``."""
    keys = list(d.keys)
    group = d.params.get("group_key", keys[-1] if keys else None)
    if not keys or group is None:
        raise ModelError(f"models.{d.name}: {kind} needs the series keys")
    cols = list(dict.fromkeys([*keys, group]))
    missing = [c for c in cols if c not in d.X.columns]
    if missing:
        raise ModelError(f"models.{d.name}: {kind} needs feature(s) {missing} "
                         f"(set features.series_keys_as_features: true)")
    frame = d.X[cols].astype(np.float64).assign(_y=d.y)
    ser = getattr(frame.groupby(keys, sort=True)["_y"], stat)().reset_index()
    grp = getattr(frame.groupby(group, sort=True)["_y"], stat)().reset_index()
    overall = float(getattr(np, stat)(d.y))
    return keys, group, {"series": ser.to_numpy(dtype=float).tolist(),
                         "groups": grp[[group, "_y"]].to_numpy(dtype=float).tolist(),
                         "overall": overall}


def _seasonal_naive(d: FitData, source: str) -> Predictor:
    """The ``source`` feature where known; else the series, group, overall median."""
    keys, group, stats = _series_stats(d, "median", source)
    return SeasonalNaivePredictor(feature_names=d.names, keys=keys, group_key=group,
                                  source=source, **stats)  # type: ignore[arg-type]


def fit_seasonal_naive(d: FitData) -> Predictor:
    """Same week last year; else the series median, the group median, the overall median."""
    return _seasonal_naive(d, "seasonal_naive")


def fit_seasonal_naive_aligned(d: FitData) -> Predictor:
    """Last year's value at the same distance from the nearest holiday (the
    ``seasonal_naive_aligned`` feature: needs ``features.holidays``); else as
    :func:`fit_seasonal_naive`."""
    if "seasonal_naive_aligned" not in d.names:
        raise ModelError(f"models.{d.name}: seasonal_naive_aligned needs features.holidays "
                         f"(the holidays it aligns last year's weeks on)")
    return _seasonal_naive(d, "seasonal_naive_aligned")


def fit_series_mean(d: FitData) -> Predictor:
    """The series mean of the training target; else the group mean, the overall mean."""
    keys, group, stats = _series_stats(d, "mean", "series_mean")
    return SeriesMeanPredictor(feature_names=d.names, keys=keys, group_key=group,
                               **stats)  # type: ignore[arg-type]
