"""The holdout report of a regressor: MAE, RMSE, R², MAPE, overall, per slice, per group.

MAPE is ``mean(|y - pred| / |y|)`` (a fraction, as scikit-learn's
``mean_absolute_percentage_error``), None when ``y`` holds a 0 (it divides by ``y``).
R² of a constant ``y`` is 1.0 when predicted exactly and 0.0 otherwise.

>>> rep = regression_report([1.0, 2.0, 4.0], [1.5, 2.0, 3.0], bootstrap=0)
>>> o = rep["overall"]
>>> o["mae"], round(o["r2"], 6), o["mape"], o["n"]
(0.5, 0.732143, 0.25, 3)
>>> regression_report([0.0, 2.0], [1.0, 2.0], bootstrap=0)["overall"]["undefined"]
{'mape': 'y holds zeros; MAPE divides by y'}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.evaluation.fairness import group_reports
from cd4ml.evaluation.metrics import as_array
from cd4ml.evaluation.tables import frame_for, metric_rows, slice_table
from cd4ml.evaluation.tabular_metrics import REGRESSION_METRICS, RegressionMetrics

__all__ = ["regression_report"]


def regression_report(y: Any, pred: Any, *, frame: pd.DataFrame | None = None,
                      slices: Sequence[str] = (), protected: Sequence[str] = (),
                      min_group_size: int = 100, bootstrap: int = 1000, seed: int = 0,
                      metric: str = "rmse") -> dict[str, Any]:
    """The JSON-able report of a regressor on scored rows; see the module.

    ``frame`` holds the rows' columns for ``slices`` and ``protected`` (groups compared by
    ``metric``, with ``bootstrap`` resamples seeded by ``seed``).
    """
    if metric not in REGRESSION_METRICS:
        raise ValueError(f"metric == {metric!r}, must be one of {list(REGRESSION_METRICS)}")
    yv = as_array(y, "y")
    p = as_array(pred, "pred")
    if p.size != yv.size:
        raise ValueError(f"pred has {p.size:,} rows but y has {yv.size:,}")
    for what, columns in (("slices", slices), ("protected", protected)):
        frame_for(frame, columns, yv.size, what=what)

    def make(codes: np.ndarray, G: int) -> RegressionMetrics:
        return RegressionMetrics(yv, p, None, codes, G)

    names = list(REGRESSION_METRICS)
    point = make(np.zeros(yv.size, dtype=np.int64), 1).point(names)
    (row,) = metric_rows(point, names, 1)
    report: dict[str, Any] = {
        "task": "regression", "metric": metric,
        "overall": {**{m: row[m] for m in names}, "n": int(yv.size),
                    "weight_sum": float(yv.size), "undefined": row["undefined"]},
        "slices": {c: slice_table(frame, c, make, names) for c in slices},
        "groups": {},
    }
    if protected:
        report["groups"] = group_reports(
            frame, list(protected), y=yv, proba_or_pred=p, labels=None, task="regression",
            min_group_size=min_group_size, bootstrap=bootstrap, seed=seed, metric=metric)
    return report
