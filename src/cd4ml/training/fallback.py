"""Where a model loses to its baseline on validation, give way: per slice, a weight.

For each slice (e.g. each department) the model's weight ``a`` in ``a * model + (1 - a)
* baseline`` is the one of ``0, 0.25, 0.5, 0.75, 1`` (``blend``) or of ``0, 1`` (a plain
fallback) that gives the slice the smallest weighted error on the validation rows: the
absolute error for MAE-like metrics, the squared error otherwise. Ties keep the model.
The choice is made on validation only; the holdout judges it.

>>> import pandas as pd
>>> keys = pd.DataFrame({"Dept": [1.0, 1.0, 2.0, 2.0]})
>>> y = np.array([10.0, 10.0, 5.0, 5.0])
>>> t = choose_weights(keys, y, np.ones(4), np.array([12.0, 8.0, 5.0, 5.0]),
...                    np.array([10.0, 10.0, 9.0, 1.0]), blend=False, metric="mae")
>>> [(s.values, s.model_weight) for s in t]
[((1.0,), 0.0)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SliceWeight", "choose_weights", "BLEND_STEPS"]

#: the model weights a blend chooses among
BLEND_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, slots=True)
class SliceWeight:
    """One slice that gives way: its key values, the model's weight, the slice's
    validation error of the model, of the baseline and of the mix."""

    values: tuple[float, ...]
    model_weight: float
    model_error: float
    baseline_error: float
    mixed_error: float
    rows: int


def choose_weights(keys: pd.DataFrame, y: np.ndarray, w: np.ndarray, model: np.ndarray,
                   baseline: np.ndarray, *, blend: bool, metric: str,
                   margin_pct: float = 0.0) -> list[SliceWeight]:
    """The slices (rows of ``keys``' columns) whose best weight is below 1, sorted; with
    ``margin_pct``, only slices where the model alone is more than that much worse than
    the baseline give way (as the gate's slice rule would judge them)."""
    steps = np.array(BLEND_STEPS if blend else (0.0, 1.0))
    mix = steps[None, :] * model[:, None] + (1 - steps[None, :]) * baseline[:, None]
    err = np.abs(y[:, None] - mix)
    if metric not in ("mae", "wmae"):
        err = err ** 2
    frame = pd.DataFrame(err * w[:, None], columns=range(len(steps)))
    frame["_w"] = w
    cols = list(keys.columns)
    frame[cols] = keys.to_numpy(dtype=np.float64)
    sums = frame.groupby(cols, sort=True).sum()
    counts = frame.groupby(cols, sort=True).size()
    out = []
    for key, row in sums.iterrows():
        e = row[list(range(len(steps)))].to_numpy() / max(row["_w"], 1e-300)
        best = int(np.flatnonzero(e == e.min())[-1])  # ties: the largest model weight
        if margin_pct > 0 and e[-1] <= e[0] * (1 + margin_pct / 100):
            continue  # within the margin: the model keeps the slice
        if steps[best] < 1.0:
            values = key if isinstance(key, tuple) else (key,)
            out.append(SliceWeight(tuple(float(v) for v in values), float(steps[best]),
                                   float(e[-1]), float(e[0]), float(e[best]),
                                   int(counts.loc[key])))
    return out
