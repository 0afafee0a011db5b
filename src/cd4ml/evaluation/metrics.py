"""Forecast error metrics in plain numpy, each ``f(y_true, y_pred, weight=None) -> float``.

``weight`` is one non-negative number per row (``None``: every row counts 1). The
competition metrics put weights into their definition:

* **WMAE** (Kaggle Walmart): ``sum(w * |y - p|) / sum(w)`` with ``w = 5`` on holiday
  weeks and 1 otherwise (see :func:`holiday_weights`).
* **NWRMSLE** (Kaggle Favorita, the CD4ML workshop):
  ``sqrt(sum(w * (ln(p + 1) - ln(y + 1))**2) / sum(w))`` after clipping negative values
  of both ``y`` and ``p`` to 0 (returns are negative sales).

``mae``, ``rmse`` and ``r2`` take a weight too (as ``sample_weight`` in scikit-learn), but
:func:`compute_metrics` reports them unweighted, next to the weighted ``wmae``.
Inputs with NaN or infinity, empty inputs, mismatched lengths and negative or all-zero
weights raise :class:`ValueError` naming the argument.

>>> y, p = [10.0, 20.0, 30.0], [12.0, 20.0, 27.0]
>>> w = holiday_weights([False, True, False])
>>> w.tolist()
[1.0, 5.0, 1.0]
>>> wmae(y, p, w)        # (1*2 + 5*0 + 1*3) / 7
0.7142857142857143
>>> mae(y, p)
1.6666666666666667
>>> m = compute_metrics(y, p, w)
>>> list(m)
['wmae', 'mae', 'rmse', 'r2', 'nwrmsle', 'n', 'weight_sum']
>>> round(m["rmse"], 4), round(m["r2"], 4), round(m["nwrmsle"], 4), m["n"], m["weight_sum"]
(2.0817, 0.935, 0.0739, 3, 7.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cd4ml.tasks import TASKS

__all__ = [
    "wmae", "mae", "rmse", "r2", "nwrmsle", "METRICS", "METRIC_NAMES", "HIGHER_IS_BETTER",
    "compute_metrics", "holiday_weights", "as_array",
]

ArrayLike = Any
Metric = Callable[..., float]


def as_array(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a 1-d float64 array; NaN, infinity or non-numbers raise ValueError.

    >>> as_array([1, 2], "y_true")
    array([1., 2.])
    >>> as_array([1.0, float("nan"), None], "y_pred")
    Traceback (most recent call last):
    ...
    ValueError: y_pred has 2 NaN values out of 3 rows; drop or fill them before evaluating
    """
    try:
        if hasattr(values, "to_numpy"):  # pandas: nullable dtypes turn pd.NA into NaN
            arr = values.to_numpy(dtype="float64", na_value=np.nan)
        else:
            arr = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers: {exc}") from None
    arr = np.ravel(arr) if arr.ndim > 1 and max(arr.shape) == arr.size else arr
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one row")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise ValueError(f"{name} has {n_nan:,} NaN values out of {arr.size:,} rows; "
                         "drop or fill them before evaluating")
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise ValueError(f"{name} has {n_inf:,} infinite values out of {arr.size:,} rows")
    return arr


def _inputs(y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike | None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = as_array(y_true, "y_true")
    p = as_array(y_pred, "y_pred")
    if p.size != y.size:
        raise ValueError(f"y_pred has {p.size:,} rows but y_true has {y.size:,}")
    if weight is None:
        return y, p, np.ones_like(y)
    w = as_array(weight, "weight")
    if w.size != y.size:
        raise ValueError(f"weight has {w.size:,} rows but y_true has {y.size:,}")
    n_neg = int((w < 0).sum())
    if n_neg:
        raise ValueError(f"weight has {n_neg:,} negative values; weights must be >= 0")
    if not w.sum() > 0:
        raise ValueError("weight sums to 0; at least one row needs a positive weight")
    return y, p, w


def _wmean(values: np.ndarray, w: np.ndarray) -> float:
    return float(np.dot(w, values) / w.sum())


def _r2_from_sums(ss_res: float, ss_tot: float) -> float:
    """R² = 1 - ss_res / ss_tot; a constant target gives 1.0 if predicted exactly, else 0.0
    (scikit-learn's ``force_finite`` convention, so results stay JSON numbers)."""
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return float(1.0 - ss_res / ss_tot)


def _log_err2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (np.log1p(np.clip(p, 0, None)) - np.log1p(np.clip(y, 0, None))) ** 2


def wmae(y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Weighted mean absolute error, ``sum(w * |y - p|) / sum(w)`` (Kaggle Walmart).

    >>> wmae([100.0, 200.0], [110.0, 150.0], [1.0, 5.0])  # (10 + 5 * 50) / 6
    43.333333333333336
    """
    y, p, w = _inputs(y_true, y_pred, weight)
    return _wmean(np.abs(y - p), w)


def mae(y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Mean absolute error; with ``weight`` the same as :func:`wmae`.

    >>> mae([100.0, 200.0], [110.0, 150.0])
    30.0
    """
    y, p, w = _inputs(y_true, y_pred, weight)
    return _wmean(np.abs(y - p), w)


def rmse(y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Root mean squared error, ``sqrt(sum(w * (y - p)**2) / sum(w))``.

    >>> rmse([0.0, 0.0], [3.0, 4.0])  # sqrt((9 + 16) / 2)
    3.5355339059327378
    """
    y, p, w = _inputs(y_true, y_pred, weight)
    return float(np.sqrt(_wmean((y - p) ** 2, w)))


def r2(y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Coefficient of determination; higher is better, 1.0 is perfect.

    A constant ``y_true`` gives 1.0 when predicted exactly and 0.0 otherwise.

    >>> r2([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])  # 1 - 1 / 2
    0.5
    """
    y, p, w = _inputs(y_true, y_pred, weight)
    ss_res = float(np.dot(w, (y - p) ** 2))
    ss_tot = float(np.dot(w, (y - _wmean(y, w)) ** 2))
    return _r2_from_sums(ss_res, ss_tot)


def nwrmsle(y_true: ArrayLike, y_pred: ArrayLike, weight: ArrayLike | None = None) -> float:
    """Normalized weighted root mean squared log error (Kaggle Favorita, CD4ML workshop).

    Negative values of ``y_true`` and ``y_pred`` are clipped to 0 first.

    >>> round(nwrmsle([0.0, 9.0], [-5.0, 99.0], [1.0, 1.25]), 6)  # sqrt(1.25 ln(10)² / 2.25)
    1.716246
    """
    y, p, w = _inputs(y_true, y_pred, weight)
    return float(np.sqrt(_wmean(_log_err2(y, p), w)))


#: Every forecast metric by name. All but ``r2`` are errors: lower is better.
METRICS: dict[str, Metric] = {
    "wmae": wmae, "mae": mae, "rmse": rmse, "r2": r2, "nwrmsle": nwrmsle,
}

#: Every metric a report can be ranked and gated by: these and each task's (cd4ml.tasks).
METRIC_NAMES: tuple[str, ...] = tuple(dict.fromkeys(
    [*METRICS, *(m for t in TASKS.values() for m in t.metrics)]))

#: Metrics where a larger value is better: ``r2`` and the tasks' (ROC AUC, accuracy, ...).
HIGHER_IS_BETTER: frozenset[str] = frozenset({"r2"}).union(
    *(t.higher for t in TASKS.values()))


def compute_metrics(y_true: ArrayLike, y_pred: ArrayLike,
                    weight: ArrayLike | None = None) -> dict[str, float]:
    """All metrics at once, plus ``n`` (rows) and ``weight_sum``.

    ``wmae`` and ``nwrmsle`` use ``weight``; ``mae``, ``rmse`` and ``r2`` are unweighted.

    >>> compute_metrics([1.0, 3.0], [2.0, 3.0], [1.0, 3.0])["wmae"]
    0.25
    """
    y, p, w = _inputs(y_true, y_pred, weight)
    err = y - p
    return {
        "wmae": _wmean(np.abs(err), w),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "r2": _r2_from_sums(float((err ** 2).sum()), float(((y - y.mean()) ** 2).sum())),
        "nwrmsle": float(np.sqrt(_wmean(_log_err2(y, p), w))),
        "n": int(y.size),
        "weight_sum": float(w.sum()),
    }


def holiday_weights(flags: ArrayLike, weight: float = 5.0) -> np.ndarray:
    """``weight`` where ``flags`` is true, 1.0 elsewhere (Walmart: 5 on holiday weeks).

    >>> holiday_weights([True, False, 1, 0], weight=5.0)
    array([5., 1., 5., 1.])
    """
    if not weight > 0:
        raise ValueError(f"weight == {weight!r}, must be > 0")
    arr = as_array(flags, "flags")
    bad = int(((arr != 0) & (arr != 1)).sum())
    if bad:
        raise ValueError(f"flags has {bad:,} values that are not true/false or 0/1")
    return np.where(arr == 1, float(weight), 1.0)
