"""Holidays known ahead: where each target period stands relative to each holiday.

A forecast's 52-week lag lands on last year's week, but holidays move: Thanksgiving and
Labor Day keep their weekday and so stay in the "same" week, Christmas keeps its date and
so falls on another weekday (the week before it holds a different mix of pre-Christmas
days each year), and Easter moves by up to five weeks. For a period of ``f`` days named
by its last day (``period_label: end``, e.g. Walmart's weeks ending on Friday) or its
first (``start``), and each holiday ``h``:

- ``hol_<h>_weeks``: the signed number of periods from the period holding the nearest
  ``h`` (0: it holds ``h``; -1: the period before; +1: after), missing beyond ``window``;
- ``hol_<h>_pre``: how many of the period's days fall in the ``f`` days just before
  ``h`` (the pre-holiday shopping days: a week ending on Dec 24 holds 7, one ending on
  Dec 23 holds 6, the next one 1);
- the same two for the period one seasonal lag back (``..._lag<P>``), so a model that
  learns from last year's value sees how this year's holiday is placed differently.

The seasonal lag itself can be aligned on the holidays (:func:`aligned_lags`): for a
period within ``align_window`` periods of a holiday, last year's value is read at the
same distance from last year's holiday, in days, not a fixed 52 weeks back. Christmas
2011 came 365 days after Christmas 2010, so the week ending 2011-12-23 reads 52 1/7
weeks back: 6/7 of the week ending 2010-12-24 and 1/7 of the week before; Thanksgiving
2013 came 371 days after Thanksgiving 2012, so its week reads 53 weeks back (the 52-week
lag lands on the week after Thanksgiving); Easter 2012 reads 50 weeks back.

Built-in rules: ``thanksgiving`` (fourth Thursday of November), ``labor_day`` (first
Monday of September), ``christmas`` (December 25), ``easter`` (Western, by the anonymous
Gregorian computus), ``super_bowl`` (the first Sunday of February through 2021, the
second from 2022). Any other calendar: ``features.holiday_dates`` (name -> dates).

>>> [easter(y).isoformat() for y in (2010, 2011, 2012, 2019)]
['2010-04-04', '2011-04-24', '2012-04-08', '2019-04-21']
>>> thanksgiving(2011).isoformat(), super_bowl(2012).isoformat(), super_bowl(2022).isoformat()
('2011-11-24', '2012-02-05', '2022-02-13')
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["BUILT_IN", "easter", "thanksgiving", "labor_day", "christmas", "super_bowl",
           "holiday_feature_names", "holiday_features", "occurrences", "aligned_lags",
           "ALIGNED_FEATURES"]

#: the seasonal features aligned on the holidays (``features.compute``): last year's
#: value at the same distance from the holiday, and ``seasonal_mean3`` with that value
#: near the holidays
ALIGNED_FEATURES = ("seasonal_naive_aligned", "seasonal_mean3_aligned")


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The ``n``-th ``weekday`` (Monday 0) of ``month``."""
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def easter(year: int) -> dt.date:
    """Western Easter Sunday: the anonymous Gregorian computus (Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def thanksgiving(year: int) -> dt.date:
    """US Thanksgiving: the fourth Thursday of November."""
    return _nth_weekday(year, 11, 3, 4)


def labor_day(year: int) -> dt.date:
    """US Labor Day: the first Monday of September."""
    return _nth_weekday(year, 9, 0, 1)


def christmas(year: int) -> dt.date:
    return dt.date(year, 12, 25)


def super_bowl(year: int) -> dt.date:
    """The first Sunday of February through 2021; the second from 2022 (17-game seasons)."""
    return _nth_weekday(year, 2, 6, 1 if year <= 2021 else 2)


#: holiday name -> its date in a year
BUILT_IN: dict[str, Callable[[int], dt.date]] = {
    "super_bowl": super_bowl, "easter": easter, "labor_day": labor_day,
    "thanksgiving": thanksgiving, "christmas": christmas}


def holiday_feature_names(holidays: Sequence[str], lag: int) -> list[str]:
    """The feature columns of ``holidays`` (``lag``: the first seasonal lag, periods)."""
    out = []
    for h in holidays:
        out += [f"hol_{h}_weeks", f"hol_{h}_pre", f"hol_{h}_weeks_lag{lag}",
                f"hol_{h}_pre_lag{lag}"]
    return out


def occurrences(name: str, first: dt.date, last: dt.date,
                table: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Every date of holiday ``name`` from a year before ``first`` to a year after ``last``
    (datetime64[D], sorted): the built-in rule, else the ``table``'s dates."""
    if name in table:
        days = np.array(sorted(pd.to_datetime(list(table[name])).to_numpy()
                               .astype("datetime64[D]")))
        return days
    rule = BUILT_IN[name]
    return np.array([np.datetime64(rule(y), "D")
                     for y in range(first.year - 1, last.year + 2)])


def _period_ends(dates: pd.DatetimeIndex, frequency_days: int, period_label: str,
                 ) -> np.ndarray:
    label = dates.to_numpy().astype("datetime64[D]")
    return label + np.timedelta64(frequency_days - 1 if period_label == "start" else 0, "D")


def _span(end: np.ndarray, lag: int, f: int) -> tuple[dt.date, dt.date]:
    """The dates whose holidays periods ending on ``end`` and their ``lag`` back need."""
    back = np.timedelta64(lag * f, "D")
    return pd.Timestamp(end.min() - back).date(), pd.Timestamp(end.max()).date()


def _nearest(end: np.ndarray, days: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """For periods ending on ``end`` and holiday dates ``days`` (both datetime64[D],
    ``days`` not empty): the signed periods to the nearest holiday (0: the period
    ``[end - f + 1, end]`` holds it), and that holiday's index in ``days``."""
    pos = np.floor_divide(end.astype(np.int64)[:, None] - days.astype(np.int64)[None, :], f)
    nearest = np.abs(pos).argmin(axis=1)
    return pos[np.arange(len(end)), nearest], nearest


def holiday_features(dates: pd.DatetimeIndex, holidays: Sequence[str], *,
                     frequency_days: int, period_label: str, window: int, lag: int,
                     table: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """The :func:`holiday_feature_names` columns for periods named by ``dates``."""
    f = frequency_days
    end = _period_ends(dates, f, period_label)
    out: dict[str, np.ndarray] = {}
    if len(end) == 0:
        return {n: np.zeros(0) for n in holiday_feature_names(holidays, lag)}
    back = np.timedelta64(lag * f, "D")
    span = _span(end, lag, f)
    for h in holidays:
        days = occurrences(h, *span, table)
        for suffix, e in (("", end), (f"_lag{lag}", end - back)):
            weeks, pre = _placement(e, days, f, window)
            out[f"hol_{h}_weeks{suffix}"], out[f"hol_{h}_pre{suffix}"] = weeks, pre
    return out


def _placement(end: np.ndarray, days: np.ndarray, f: int, window: int,
               ) -> tuple[np.ndarray, np.ndarray]:
    """For periods ending on ``end``: the signed periods to the nearest holiday in
    ``days`` (NaN beyond ``window`` or with no holiday), and the pre-holiday days held."""
    n = len(end)
    if len(days) == 0:
        return np.full(n, np.nan), np.zeros(n)
    weeks = _nearest(end, days, f)[0].astype(np.float64)
    weeks[np.abs(weeks) > window] = np.nan
    e = end.astype(np.int64)[:, None]
    h = days.astype(np.int64)[None, :]
    # days of [end - f + 1, end] inside [h - f, h - 1], summed over the holidays (they
    # are a year apart, so at most one overlaps)
    lo = np.maximum(e - f + 1, h - f)
    hi = np.minimum(e, h - 1)
    pre = np.clip(hi - lo + 1, 0, None).sum(axis=1).astype(np.float64)
    return weeks, pre


def aligned_lags(dates: pd.DatetimeIndex, holidays: Sequence[str], *, frequency_days: int,
                 period_label: str, window: int, lag: int,
                 table: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Per period: the seasonal lag, in periods (fractional), that reads last year at the
    same distance in days from the nearest holiday within ``window`` periods (the first
    listed on a tie); NaN where no holiday is that near, or where the holiday has no
    occurrence about ``lag`` periods earlier (a ``holiday_dates`` table of one year).

    >>> d = pd.DatetimeIndex(["2011-12-23", "2011-11-25", "2011-07-01"])
    >>> aligned_lags(d, ["thanksgiving", "christmas"], frequency_days=7, period_label="end",
    ...              window=2, lag=52, table={}).round(4).tolist()
    [52.1429, 52.0, nan]
    """
    f = frequency_days
    end = _period_ends(dates, f, period_label)
    best = np.full(len(end), np.inf)
    out = np.full(len(end), np.nan)
    if len(end) == 0:
        return out
    back = lag * f
    span = _span(end, lag, f)
    for h in holidays:
        days = occurrences(h, *span, table)
        if len(days) == 0:
            continue
        pos, nearest = _nearest(end, days, f)
        dist = np.abs(pos).astype(np.float64)
        days = days.astype(np.int64)
        this = days[nearest]
        # last year's occurrence: the one nearest to ``lag`` periods before, if it is
        # within three periods of that
        prev_i = np.abs(days[None, :] - (this - back)[:, None]).argmin(axis=1)
        gap = this - days[prev_i]
        ok = (dist <= window) & (dist < best) & (np.abs(gap - back) <= 3 * f)
        out[ok] = gap[ok] / f
        best[ok] = dist[ok]
    return out
