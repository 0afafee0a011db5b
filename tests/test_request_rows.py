"""Request records -> rows of the feature matrix: the plain-record fast path gives exactly
what the checked path gives, and anything not plain is decided by the checked path."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from cd4ml.errors import RequestError
from cd4ml.registry.loader import load_model

NAME = "walmart-weekly-sales"


@pytest.fixture(scope="module")
def model(trained_project: Path):  # type: ignore[no-untyped-def]
    return load_model(f"{NAME}@production", project_dir=trained_project)


def _valid(model, n: int, seed: int) -> list[dict]:  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    keys, dates = list(model.series_index), list(model._date_index)
    return [{"store": int(k[0]), "dept": int(k[1]), "date": rnd.choice(dates)}
            for k in rnd.choices(keys, k=n)]


def test_plain_records_take_the_fast_path_with_the_checked_paths_rows(model) -> None:
    recs = _valid(model, 2_000, 1)
    fast = model._rows_plain(recs)
    assert fast is not None
    np.testing.assert_array_equal(fast, model._rows_checked(recs))
    np.testing.assert_array_equal(model.rows_for(recs), fast)


@pytest.mark.parametrize("bad", [
    {"store": True, "dept": 1},           # a bool is not a store number
    {"store": "1"},                       # a string where a number belongs
    {"store": 1.0},                       # a float: not plain, but valid
    {"store": np.int64(1)},               # a numpy int: not plain, but valid
    {"date": "2012-11-03"},               # not a week date
    {"date": "2031-01-06"},               # beyond the horizon
    {"store": 999},                       # unknown series
    {"extra": 1},                         # an extra field
    {"Store": 1},                         # upper case: not plain, but valid
    {"dept": None},                       # missing value
])
def test_anything_not_plain_gets_the_checked_paths_answer(model, bad: dict) -> None:
    recs = _valid(model, 50, 2)
    rec = dict(recs[17])
    if "Store" in bad:
        del rec["store"]
    rec.update(bad)
    recs[17] = rec
    assert model._rows_plain(recs) is None
    try:
        want = model._rows_checked(recs)
    except RequestError as exc:
        with pytest.raises(RequestError) as got:
            model.rows_for(recs)
        assert got.value.errors == exc.errors and str(got.value) == str(exc)
        assert "rows[17]" in str(exc)
    else:
        np.testing.assert_array_equal(model.rows_for(recs), want)
