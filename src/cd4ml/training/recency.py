"""Recency weighting: a candidate's ``params.recency_half_life`` (weeks) weighs each
training row ``0.5 ** (age / half_life)``, its age in weeks counted back from the end of
that fit's training window (the latest time among the rows fitted).

The validation fit, the holdout fit and the final refit each weigh from their own end,
and the weights multiply the ones the rows already carry (a forecast's
``evaluation.weight`` on holiday weeks). cd4ml reads the parameter itself; the library
never sees it (:data:`cd4ml.training.fitdata.OURS`).

>>> import pandas as pd
>>> times = pd.to_datetime(["2012-01-06", "2012-01-13", "2012-01-20", "2012-01-27"])
>>> recency_weights(times, half_life=2).round(4).tolist()
[0.3536, 0.5, 0.7071, 1.0]
>>> check_half_life(0, where="models.candidates.0.params.recency_half_life")
Traceback (most recent call last):
...
cd4ml.errors.ModelError: models.candidates.0.params.recency_half_life = 0: must be a \
number of weeks > 0 (the age at which a row counts half)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import ModelError

__all__ = ["HALF_LIFE", "check_half_life", "recency_weights"]

#: the parameter's name in a model spec's ``params``
HALF_LIFE = "recency_half_life"


def check_half_life(value: Any, *, where: str) -> float:
    """``value`` as a half-life in weeks; a one-line ModelError naming ``where`` if it is
    not a finite number > 0."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_)) and math.isfinite(value) and value > 0
    if not ok:
        raise ModelError(f"{where} = {value!r}: must be a number of weeks > 0 (the age at "
                         f"which a row counts half)")
    return float(value)


def recency_weights(times: Any, *, half_life: float, where: str = HALF_LIFE) -> np.ndarray:
    """``0.5 ** (age / half_life)`` per row, ``age`` in weeks before the latest of
    ``times`` (so the latest row weighs 1). ``times`` must all be known."""
    t = pd.DatetimeIndex(pd.to_datetime(pd.Series(times).reset_index(drop=True)))
    if t.tz is not None:
        t = t.tz_convert(None)
    if t.isna().any():
        raise ModelError(f"{where}: {int(t.isna().sum())} training row(s) have no time to "
                         f"age them by")
    if len(t) == 0:
        return np.ones(0)
    age = ((t.max() - t) / pd.Timedelta(weeks=1)).to_numpy(dtype=np.float64)
    return np.power(0.5, age / check_half_life(half_life, where=where))
