"""Holiday features: the built-in rules against independent calendars (dateutil's Easter,
pandas' US federal holiday rules) and hand-checked real dates; on the real Walmart weeks,
the weeks holding our Super Bowl, Labor Day, Thanksgiving and Christmas are exactly the
weeks Kaggle's data marks IsHoliday; the pre-Christmas days that make last year's week a
poor guide; a calendar of one's own; and the one-line refusals."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_project

from cd4ml.features.holidays import (BUILT_IN, christmas, easter, holiday_features, labor_day,
                                     super_bowl, thanksgiving)

ALL = ["super_bowl", "easter", "labor_day", "thanksgiving", "christmas"]


def test_easter_matches_dateutil_for_three_centuries() -> None:
    from dateutil.easter import EASTER_WESTERN
    from dateutil.easter import easter as reference

    for y in range(1900, 2201):
        assert easter(y) == reference(y, EASTER_WESTERN), y


def test_thanksgiving_and_labor_day_match_pandas_federal_rules() -> None:
    from pandas.tseries.holiday import USLaborDay, USThanksgivingDay

    start, end = pd.Timestamp("1990-01-01"), pd.Timestamp("2040-12-31")
    assert [thanksgiving(y) for y in range(1990, 2041)] == \
        [d.date() for d in USThanksgivingDay.dates(start, end)]
    assert [labor_day(y) for y in range(1990, 2041)] == \
        [d.date() for d in USLaborDay.dates(start, end)]


def test_super_bowl_on_the_real_game_days() -> None:
    # Super Bowls XLIV, XLV, XLVI (the Walmart years), LV, then the 17-game seasons' LVI-LVIII
    real = {2010: "2010-02-07", 2011: "2011-02-06", 2012: "2012-02-05", 2021: "2021-02-07",
            2022: "2022-02-13", 2023: "2023-02-12", 2024: "2024-02-11"}
    assert {y: super_bowl(y).isoformat() for y in real} == real
    assert christmas(2011) == dt.date(2011, 12, 25) and set(BUILT_IN) == set(ALL)


def _features(dates: list[str], *, holidays: list[str] = ALL, period_label: str = "end",
              table: dict[str, list[str]] | None = None) -> pd.DataFrame:
    cols = holiday_features(pd.DatetimeIndex(dates), holidays, frequency_days=7,
                            period_label=period_label, window=4, lag=52, table=table or {})
    return pd.DataFrame(cols, index=dates)


def test_weeks_ending_on_friday_around_christmas_and_easter_by_hand() -> None:
    # Walmart's weeks end on Friday: the week of 2010-12-24 is Dec 18-24, all 7 days just
    # before Christmas; 2011's matching week (Dec 17-23) holds 6 and the next one Dec 24
    f = _features(["2010-12-17", "2010-12-24", "2010-12-31", "2011-12-23", "2011-12-30",
                   "2012-04-06", "2012-04-13", "2011-11-25", "2012-02-10"])
    assert f["hol_christmas_weeks"].iloc[:5].tolist() == [-2, -1, 0, -1, 0]
    assert f["hol_christmas_pre"].iloc[:5].tolist() == [0, 7, 0, 6, 1]
    # one seasonal lag (52 weeks) back: 2011-12-23's lag is 2010-12-24's week
    assert f.loc["2011-12-23", "hol_christmas_pre_lag52"] == 7
    assert f.loc["2011-12-30", "hol_christmas_pre_lag52"] == 0
    # Easter 2012 is Sunday April 8: the week ending Friday the 6th is the week before it,
    # with six of its days (Apr 1-6) in the 7 days before Easter; 52 weeks back is
    # 2011-04-08, two weeks before Easter 2011 (April 24)
    assert f.loc["2012-04-06", ["hol_easter_weeks", "hol_easter_pre"]].tolist() == [-1, 6]
    assert f.loc["2012-04-13", "hol_easter_weeks"] == 0
    assert f.loc["2012-04-06", "hol_easter_weeks_lag52"] == -3
    # Thanksgiving 2011 (Thu 24th) and Super Bowl 2012 (Sun 5th) fall in these weeks
    assert f.loc["2011-11-25", "hol_thanksgiving_weeks"] == 0
    assert f.loc["2012-02-10", "hol_super_bowl_weeks"] == 0
    assert np.isnan(f.loc["2012-04-06", "hol_christmas_weeks"])  # beyond the window


def test_periods_named_by_their_first_day() -> None:
    # the same weeks named by their Saturday: the same placements
    end = _features(["2010-12-24", "2011-12-30"])
    start = _features(["2010-12-18", "2011-12-24"], period_label="start")
    assert np.array_equal(end.to_numpy(), start.to_numpy(), equal_nan=True)


def test_a_calendar_of_ones_own() -> None:
    f = _features(["2011-07-08", "2011-07-15", "2011-07-22"], holidays=["prime_day"],
                  table={"prime_day": ["2010-07-13", "2011-07-12", "2012-07-11"]})
    assert f["hol_prime_day_weeks"].tolist() == [-1, 0, 1]
    # the 7 days before July 12, 2011 are Jul 5-11: Jul 5-8, then Jul 9-11
    assert f["hol_prime_day_pre"].tolist() == [4, 3, 0]


def test_on_real_walmart_weeks_our_holidays_are_kaggles(full_walmart: Path) -> None:
    """Kaggle's IsHoliday marks the weeks of the Super Bowl, Labor Day, Thanksgiving and
    Christmas (its Christmas week is the one holding December 25: Dec 25-31, 2010)."""
    from cd4ml.features import FeatureSpec, compute_features

    tr = pd.read_csv(full_walmart / "train.csv.zip", parse_dates=["Date"])
    marked = set(tr.loc[tr.IsHoliday, "Date"].dt.date)
    series = tr[(tr.Store == 1) & (tr.Dept == 1)].sort_values("Date")
    spec = FeatureSpec(keys=["Store", "Dept"], time="Date", target="Weekly_Sales",
                       horizon=39, lags=[52], calendar=[], rolling_windows=[4],
                       holidays=["super_bowl", "labor_day", "thanksgiving", "christmas"])
    X = compute_features(series.reset_index(drop=True), spec)
    on = np.zeros(len(X), dtype=bool)
    for h in spec.holidays:
        on |= (X[f"hol_{h}_weeks"] == 0).to_numpy()
    assert set(series.Date.dt.date[on]) == marked and len(marked) == 10


def _run(proj: Path, *sets: str) -> subprocess.CompletedProcess:
    args = sum((["--set", s] for s in sets), [])
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", "run", "-p", str(proj), *args],
                          capture_output=True, text=True, timeout=300)


def test_holidays_in_a_run_and_the_refusals(tmp_path: Path, sample_dir: Path) -> None:
    from conftest import FAST

    proj = make_project(tmp_path, sample_dir)
    bad = _run(proj, "features.holidays=[christmas,ramadan]")
    assert bad.returncode != 0 and not (proj / ".cd4ml").exists()
    line = bad.stderr.strip()
    assert "\n" not in line and "features.holidays.1" in line and "'ramadan'" in line \
        and "known: super_bowl, easter" in line, line
    twice = _run(proj, "features.holidays=[easter,easter]")
    assert twice.returncode != 0 and "listed twice" in twice.stderr
    align = _run(proj, "features.holiday_align=[diwali]")
    assert align.returncode != 0 and "features.holiday_align.0" in align.stderr and \
        "'diwali'" in align.stderr and "\n" not in align.stderr.strip(), align.stderr
    align2 = _run(proj, "features.holiday_align=[christmas,christmas]")
    assert align2.returncode != 0 and "features.holiday_align.1" in align2.stderr and \
        "listed twice" in align2.stderr, align2.stderr
    window = _run(proj, "features.holiday_align_window=-1")
    assert window.returncode != 0 and "features.holiday_align_window = -1" in window.stderr
    empty = _run(proj, "features.holidays=[fair]", "features.holiday_dates={fair: []}")
    assert empty.returncode != 0 and "no dates" in empty.stderr and \
        "\n" not in empty.stderr.strip()
    assert not (proj / ".cd4ml").exists()
    ok = _run(proj, *FAST, "features.holidays=[thanksgiving,christmas,fair]",
              "features.holiday_dates={fair: [2010-08-20, 2011-08-19, 2012-08-17]}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    from cd4ml.pipeline.run import open_project
    from cd4ml.registry.loader import load_version

    cfg, _, stores, _ = open_project(proj)
    with stores:
        b = load_version(stores.metadata, stores.artifacts, cfg.models.name, 1)
    spec = b.spec
    assert spec.holidays == ["thanksgiving", "christmas", "fair"]
    assert spec.holiday_dates == {"fair": ["2010-08-20", "2011-08-19", "2012-08-17"]}
    assert "hol_fair_weeks" in spec.feature_names


def test_aligned_lags_by_hand() -> None:
    """Christmas keeps its date (365 or 366 days a year), Thanksgiving its weekday (364,
    or 371 when the fourth Thursday comes a week later), Easter moves by weeks."""
    from cd4ml.features.holidays import aligned_lags

    d = pd.DatetimeIndex(["2011-12-23", "2011-12-30", "2012-12-28", "2013-11-29",
                          "2012-04-13", "2011-11-25", "2011-12-09", "2011-08-05"])
    lags = aligned_lags(d, ALL, frequency_days=7, period_label="end", window=2, lag=52,
                        table={})
    assert lags[:2].tolist() == [365 / 7] * 2  # Christmas 2010 -> 2011
    assert lags[2] == 366 / 7  # 2012 is a leap year: 2011-12-25 -> 2012-12-25
    assert lags[3] == 53  # Thanksgiving 2012-11-22 -> 2013-11-28
    assert lags[4] == 50  # Easter 2011-04-24 -> 2012-04-08 (the week after it)
    assert lags[5] == 52  # Thanksgiving 2010-11-25 -> 2011-11-24
    # 2011-12-09: two weeks after Thanksgiving and two before Christmas: the first listed
    assert lags[6] == 52 and ALL.index("thanksgiving") < ALL.index("christmas")
    assert np.isnan(lags[7])  # no holiday within 2 weeks
    narrow = aligned_lags(d, ALL, frequency_days=7, period_label="end", window=0, lag=52,
                          table={})
    assert np.isnan(narrow[0]) and narrow[1] == 365 / 7  # only the week holding Dec 25
    one_year = aligned_lags(d, ["fair"], frequency_days=7, period_label="end", window=2,
                            lag=52, table={"fair": ["2011-12-20"]})
    assert np.isnan(one_year).all()  # no occurrence a year earlier: nothing to align on


def test_aligned_seasonal_values_on_real_walmart_weeks(full_walmart: Path) -> None:
    """Store 1, dept 1, by hand from the CSV: the week ending 2011-12-23 reads 6/7 of the
    week ending 2010-12-24 and 1/7 of the one ending 2010-12-17; a week far from any
    holiday reads the plain seasonal naive; seasonal_mean3_aligned is seasonal_mean3 there.
    """
    from cd4ml.features import FeatureSpec, compute_features

    tr = pd.read_csv(full_walmart / "train.csv.zip", parse_dates=["Date"])
    series = tr[(tr.Store == 1) & (tr.Dept == 1)].sort_values("Date").reset_index(drop=True)
    y = series.set_index(series.Date.dt.strftime("%Y-%m-%d")).Weekly_Sales
    spec = FeatureSpec(keys=["Store", "Dept"], time="Date", target="Weekly_Sales",
                       horizon=39, lags=[52], calendar=[], rolling_windows=[4],
                       holidays=["thanksgiving", "christmas"])
    X = compute_features(series, spec).set_index(y.index)
    got = X.loc["2011-12-23", "seasonal_naive_aligned"]
    want = 6 / 7 * y["2010-12-24"] + 1 / 7 * y["2010-12-17"]
    assert abs(got - want) < 1e-3 * abs(want)  # float32 features
    assert X.loc["2011-12-23", "seasonal_mean3_aligned"] == got
    assert X.loc["2011-11-25", "seasonal_naive_aligned"] == np.float32(y["2010-11-26"])
    for week in ("2011-07-01", "2012-06-01"):
        row = X.loc[week]
        assert row.seasonal_naive_aligned == row.seasonal_naive
        assert row.seasonal_mean3_aligned == row.seasonal_mean3
    # the first year has no last year: missing, as seasonal_naive
    assert np.isnan(X.loc["2010-12-24", "seasonal_naive_aligned"])
    assert "seasonal_naive_aligned" not in FeatureSpec(
        keys=["Store"], time="Date", target="y", horizon=1).feature_names


def test_aligned_lag_never_reads_inside_the_horizon() -> None:
    """With a horizon of 52 weeks, Easter's 50-week alignment would read a week not yet
    known when forecasting: that week keeps the plain seasonal naive."""
    from cd4ml.features import FeatureSpec, compute_features

    dates = pd.date_range("2010-01-01", "2012-12-28", freq="7D")
    panel = pd.DataFrame({"s": 1, "t": dates, "y": np.arange(len(dates), dtype=float)})
    spec = FeatureSpec(keys=["s"], time="t", target="y", horizon=52, calendar=[],
                       rolling_windows=[4], holidays=["easter"], seasonal_years=1)
    X = compute_features(panel, spec).set_index(dates.strftime("%Y-%m-%d"))
    easter_week = X.loc["2012-04-13"]  # the week of Apr 7-13 holds Easter 2012-04-08
    assert easter_week.seasonal_naive_aligned == easter_week.seasonal_naive
    # y is the row number: every aligned value reads 52 or more rows back
    v, row = X.seasonal_naive_aligned.to_numpy(), np.arange(len(X))
    known = ~np.isnan(v)
    assert (v[known] <= row[known] - 52 + 1e-6).all()


def test_the_aligned_seasonal_naive_model(sample_dir: Path) -> None:
    """``seasonal_naive_aligned`` answers the aligned feature where it is known (else the
    series median, as seasonal naive), survives a save/load, and is refused in one line
    by a spec without holidays."""
    from cd4ml.config import ModelSpec
    from cd4ml.errors import ModelError
    from cd4ml.features import FeatureSpec, compute_features
    from cd4ml.registry.predictors import load_predictor
    from cd4ml.training.fit import fit_model

    tr = pd.read_csv(sample_dir / "train.csv.zip", parse_dates=["Date"])
    pnl = tr.sort_values(["Store", "Dept", "Date"]).reset_index(drop=True)
    spec = FeatureSpec(keys=["Store", "Dept"], time="Date", target="Weekly_Sales",
                       horizon=39, calendar=[], rolling_windows=[4],
                       holidays=["thanksgiving", "christmas"])
    X = compute_features(pnl, spec)
    y = pnl.Weekly_Sales.to_numpy(np.float64)
    m = fit_model(ModelSpec(name="a", type="seasonal_naive_aligned"), X, y, np.ones(len(y)),
                  seed=0, keys=spec.keys, times=pnl.Date)
    p = m.predict(X.to_numpy(np.float32))
    known = X.seasonal_naive_aligned.notna().to_numpy()
    assert known.sum() > 300 and np.allclose(p[known], X.seasonal_naive_aligned[known])
    differs = known & (X.seasonal_naive_aligned != X.seasonal_naive).to_numpy()
    assert differs.sum() >= 5 * 7  # the 5 weeks around Christmas 2011, each department
    again = load_predictor(m.to_files(), m.meta())
    assert np.array_equal(again.predict(X.to_numpy(np.float32)), p)
    plain = FeatureSpec(keys=["Store", "Dept"], time="Date", target="Weekly_Sales",
                        horizon=39, calendar=[], rolling_windows=[4])
    with pytest.raises(ModelError, match="seasonal_naive_aligned needs features.holidays"):
        fit_model(ModelSpec(name="a", type="seasonal_naive_aligned"),
                  compute_features(pnl, plain), y, np.ones(len(y)), seed=0,
                  keys=spec.keys, times=pnl.Date)
