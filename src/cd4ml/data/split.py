"""Splits that do not leak: time windows (train < validation < holdout) and group splits.

Periods are counted back from the last date in steps of ``frequency_days``: period 0 holds
the last ``frequency_days`` days, period 1 the ones before, and so on. The holdout is the
last ``holdout_periods`` periods that have data, validation the ``validation_periods``
before it, and training everything earlier.

>>> import pandas as pd
>>> dates = pd.date_range("2012-01-06", periods=10, freq="7D")
>>> w = time_windows(dates, validation_periods=2, holdout_periods=3)
>>> str(w.train_end.date()), str(w.validation_start.date()), str(w.holdout_start.date())
('2012-02-03', '2012-02-10', '2012-02-24')
>>> [int(m.sum()) for m in (w.train, w.validation, w.holdout)]
[5, 2, 3]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import DataError

__all__ = ["Windows", "time_windows", "group_split", "group_draws"]


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=bool)


@dataclass(frozen=True)
class Windows:
    """Boundaries (inclusive) of the three windows, and masks for the dates they came from.

    ``train`` / ``validation`` / ``holdout`` are boolean arrays aligned with the input
    dates; :meth:`masks` computes them for any other dates (e.g. a joined frame).
    """

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    validation_start: pd.Timestamp
    validation_end: pd.Timestamp
    holdout_start: pd.Timestamp
    holdout_end: pd.Timestamp
    frequency_days: int
    train: np.ndarray = field(default_factory=_empty, repr=False, compare=False)
    validation: np.ndarray = field(default_factory=_empty, repr=False, compare=False)
    holdout: np.ndarray = field(default_factory=_empty, repr=False, compare=False)

    def masks(self, dates: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, validation, holdout) boolean masks for ``dates``; dates after the
        holdout or missing are in none of them."""
        d = _as_dates(dates)
        train = (d <= self.train_end).to_numpy(dtype=bool, na_value=False)
        val = ((d >= self.validation_start) & (d <= self.validation_end)).to_numpy(
            dtype=bool, na_value=False)
        hold = ((d >= self.holdout_start) & (d <= self.holdout_end)).to_numpy(
            dtype=bool, na_value=False)
        return train, val, hold

    def to_dict(self) -> dict[str, Any]:
        """The boundaries as ISO dates (for run metadata and lineage)."""
        keys = ("train_start", "train_end", "validation_start", "validation_end",
                "holdout_start", "holdout_end")
        out: dict[str, Any] = {k: getattr(self, k).isoformat() for k in keys}
        out["frequency_days"] = self.frequency_days
        return out


def _as_dates(dates: Any) -> pd.Series:
    s = dates if isinstance(dates, pd.Series) else pd.Series(dates)
    return pd.to_datetime(s.reset_index(drop=True))


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} == {value!r}, must be an integer >= 1")
    return int(value)


def time_windows(dates: Any, *, validation_periods: int, holdout_periods: int,
                 frequency_days: int = 7) -> Windows:
    """Split by time: train, then ``validation_periods``, then ``holdout_periods``.

    Raises :class:`DataError` when a date is missing or when there are fewer than
    ``validation_periods + holdout_periods + 1`` periods with data.
    """
    v = _positive("validation_periods", validation_periods)
    h = _positive("holdout_periods", holdout_periods)
    f = _positive("frequency_days", frequency_days)
    d = _as_dates(dates)
    if d.isna().any():
        rows = np.flatnonzero(d.isna().to_numpy())
        raise DataError(f"dates: {len(rows)} missing value(s) (rows {', '.join(map(str, rows[:5]))}"
                        f"{', ...' if len(rows) > 5 else ''}); drop or fix them before splitting")
    if len(d) == 0:
        raise DataError("dates: no dates to split")
    last = d.max()
    period = ((last - d).dt.days // f).to_numpy()
    distinct = np.unique(period)  # ascending: 0 is the last period
    need = v + h + 1
    if len(distinct) < need:
        raise DataError(
            f"not enough periods to split: need {need} ({v} validation + {h} holdout + at least "
            f"1 to train) but the dates span {len(distinct)} period(s) of {f} days from "
            f"{d.min().date()} to {last.date()}")
    hold_p, val_p = distinct[h - 1], distinct[h + v - 1]
    hold = period <= hold_p
    val = (period > hold_p) & (period <= val_p)
    train = period > val_p
    return Windows(
        train_start=d[train].min(), train_end=d[train].max(),
        validation_start=d[val].min(), validation_end=d[val].max(),
        holdout_start=d[hold].min(), holdout_end=last, frequency_days=f,
        train=train, validation=val, holdout=hold)


def group_split(keys: pd.DataFrame, *, test_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask (True = test) putting whole groups on one side.

    Each distinct key (the row's values joined as text) is hashed with ``seed`` (blake2b)
    to a number in [0, 1); the group is in test when that number is below
    ``test_fraction``. The result depends only on the key values and the seed: the same
    on every call, machine and row order.

    >>> keys = pd.DataFrame({"store": [1, 1, 2, 2, 3, 3], "dept": [1, 1, 1, 1, 2, 2]})
    >>> group_split(keys, test_fraction=0.5, seed=3).tolist()
    [True, True, False, False, True, True]
    """
    if isinstance(test_fraction, bool) or not 0 < float(test_fraction) < 1:
        raise DataError(f"test_fraction == {test_fraction!r}, must be in (0, 1)")
    return group_draws(keys, seed=seed) < float(test_fraction)


def group_draws(keys: pd.DataFrame | pd.Series, *, seed: int, purpose: str = "") -> np.ndarray:
    """Per row, its group's number in [0, 1) (what :func:`group_split` compares).

    ``purpose`` salts the hash besides ``seed``, so that two draws with the same seed
    (e.g. the holdout and the validation share) are independent.
    """
    if isinstance(keys, pd.Series):
        keys = keys.to_frame()
    if keys.shape[1] == 0:
        raise DataError("group_split: keys has no columns; pass the group columns")
    text = keys.iloc[:, 0].astype("str")
    for c in keys.columns[1:]:
        text = text + "\x1f" + keys[c].astype("str")
    codes, uniques = pd.factorize(text, use_na_sentinel=False)
    salt = (f"{purpose}:" if purpose else "").encode() + str(int(seed)).encode()
    draw = np.array([
        int.from_bytes(hashlib.blake2b(str(u).encode(), digest_size=8, key=salt).digest(),
                       "big") / 2.0**64 for u in uniques])
    return draw[codes]
