"""cd4ml.data.split: time windows are disjoint and ordered; group splits keep groups whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cd4ml.data.split import group_split, time_windows
from cd4ml.errors import DataError


def weekly(n_weeks: int, n_series: int = 3, start: str = "2010-02-05") -> pd.Series:
    weeks = pd.date_range(start, periods=n_weeks, freq="7D")
    return pd.Series(np.tile(weeks, n_series))


def test_windows_disjoint_ordered_and_cover_everything() -> None:
    dates = weekly(20)
    w = time_windows(dates, validation_periods=4, holdout_periods=3)
    masks = np.vstack([w.train, w.validation, w.holdout])
    assert (masks.sum(axis=0) == 1).all()  # disjoint and complete
    assert dates[w.train].max() < dates[w.validation].min()
    assert dates[w.validation].max() < dates[w.holdout].min()
    assert dates[w.holdout].nunique() == 3 and dates[w.validation].nunique() == 4
    assert w.holdout_end == dates.max() and w.train_start == dates.min()
    assert (w.train_end, w.validation_start) == (pd.Timestamp("2010-04-30"),
                                                 pd.Timestamp("2010-05-07"))
    assert w.validation_end + pd.Timedelta(days=7) == w.holdout_start
    again = w.masks(dates.to_numpy())
    assert all((a == b).all() for a, b in zip(again, (w.train, w.validation, w.holdout)))
    assert w.to_dict()["holdout_start"].startswith("2010-06-04")


def test_masks_for_other_dates() -> None:
    w = time_windows(weekly(10), validation_periods=2, holdout_periods=2)
    later = pd.Series([pd.Timestamp("2009-01-01"), w.holdout_end + pd.Timedelta("7D"), pd.NaT])
    train, val, hold = w.masks(later)
    assert train.tolist() == [True, False, False] and not val.any() and not hold.any()


def test_daily_dates_grouped_into_weeks() -> None:
    dates = pd.Series(pd.date_range("2011-01-01", "2011-03-31", freq="D"))
    w = time_windows(dates, validation_periods=2, holdout_periods=1, frequency_days=7)
    assert w.holdout.sum() == 7 and w.validation.sum() == 14
    assert dates[w.holdout].min() == pd.Timestamp("2011-03-25")


def test_gaps_count_only_periods_with_data() -> None:
    dates = pd.Series(pd.to_datetime(["2010-01-01", "2010-01-08", "2010-03-05", "2010-03-12"]))
    w = time_windows(dates, validation_periods=1, holdout_periods=2)
    assert w.holdout.tolist() == [False, False, True, True]
    assert w.validation.tolist() == [False, True, False, False]


def test_not_enough_periods_names_the_numbers() -> None:
    with pytest.raises(DataError, match=r"need 79 \(39 validation \+ 39 holdout \+ at least 1 "
                                        r"to train\) but the dates span 50 period\(s\) of 7 days "
                                        r"from 2010-02-05 to 2011-01-14"):
        time_windows(weekly(50), validation_periods=39, holdout_periods=39)


@pytest.mark.parametrize("kw,match", [
    ({"validation_periods": 0, "holdout_periods": 1}, "validation_periods == 0, must be"),
    ({"validation_periods": 1, "holdout_periods": 1.5}, "holdout_periods == 1.5"),
    ({"validation_periods": 1, "holdout_periods": 1, "frequency_days": 0}, "frequency_days"),
])
def test_bad_arguments(kw: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        time_windows(weekly(10), **kw)


def test_missing_dates_rejected() -> None:
    with pytest.raises(DataError, match=r"dates: 1 missing value\(s\) \(rows 2\)"):
        time_windows(pd.Series(pd.to_datetime(["2010-01-01", "2010-01-08", None])),
                     validation_periods=1, holdout_periods=1)


# -- group split ----------------------------------------------------------------------

@pytest.fixture()
def keys() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"store": rng.integers(1, 46, 20_000), "dept": rng.integers(1, 30, 20_000)})


def test_group_split_keeps_groups_whole_and_is_stable(keys: pd.DataFrame) -> None:
    mask = group_split(keys, test_fraction=0.2, seed=7)
    assert mask.dtype == bool and len(mask) == len(keys)
    sides = pd.Series(mask).groupby([keys["store"], keys["dept"]]).nunique()
    assert (sides == 1).all()  # no group on both sides
    share = pd.Series(mask).groupby([keys["store"], keys["dept"]]).first().mean()
    assert 0.15 < share < 0.25
    assert (group_split(keys, test_fraction=0.2, seed=7) == mask).all()
    shuffled = keys.sample(frac=1, random_state=3)
    again = group_split(shuffled, test_fraction=0.2, seed=7)
    assert (again == mask[shuffled.index.to_numpy()]).all()  # row order does not matter
    other = group_split(keys, test_fraction=0.2, seed=8)
    assert (other != mask).any()


def test_group_split_dtype_independent_and_series(keys: pd.DataFrame) -> None:
    a = group_split(keys, test_fraction=0.3, seed=1)
    b = group_split(keys.astype({"store": "int32", "dept": "str"}), test_fraction=0.3, seed=1)
    assert (a == b).all()
    s = group_split(keys["store"], test_fraction=0.3, seed=1)
    assert pd.Series(s).groupby(keys["store"]).nunique().max() == 1


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_group_split_bad_fraction(keys: pd.DataFrame, fraction: float) -> None:
    with pytest.raises(DataError, match=rf"test_fraction == {fraction}, must be in \(0, 1\)"):
        group_split(keys, test_fraction=fraction, seed=0)
