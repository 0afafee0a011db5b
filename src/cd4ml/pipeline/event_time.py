"""A logged row's event time: the time the row is about, by which monitoring can cut
windows (``--by event``), as opposed to the time it was answered.

:func:`event_source` says where it comes from for a project (a forecast's date field; a
tabular model's ``monitoring.event_time`` input; else the request's ``X-Event-Time``
header, logged as ``event_ts``); :func:`event_times` reads it from a window's rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["event_source", "event_times", "UTC_NS"]

#: the type of event times: nanoseconds, UTC
UTC_NS = "datetime64[ns, UTC]"
#: the years a time in nanoseconds holds (as the server bounds X-Event-Time)
_YEARS = (pd.Timestamp("1678-01-01", tz="UTC"), pd.Timestamp("2262-01-01", tz="UTC"))


def event_source(cfg: Any) -> tuple[str, str]:
    """Where a logged row's event time comes from, as (what, logged column): a
    forecast's date field, a tabular model's ``monitoring.event_time`` input, else the
    request's ``X-Event-Time`` header (``event_ts``)."""
    if cfg.task == "forecast":
        field = str(cfg.data.time).lower()  # the request field of data.time
        return f"the forecast date ({field})", f"input.{field}"
    if cfg.monitoring.event_time is not None:
        field = cfg.monitoring.event_time
        return f"the input {field} (monitoring.event_time)", f"input.{field}"
    return "the X-Event-Time header", "event_ts"


def event_times(cfg: Any, df: pd.DataFrame) -> pd.Series:
    """Each row's event time (``datetime64[ns, UTC]``, index of ``df``; NaT where it has
    none), from :func:`event_source`. A logged number is epoch seconds, text an ISO 8601
    date or date-time (UTC unless it gives an offset) or epoch seconds; anything else,
    or a time outside the years 1678-2261, is NaT.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(task="classification", monitoring=NS(event_time="seen"))
    >>> df = pd.DataFrame({"input.seen": ["2017-03-01", "2017-03-01T12:00+02:00",
    ...                                   "1488369600", "soon", None, "2017-13-01"]})
    >>> for t in event_times(cfg, df):
    ...     print(t)
    2017-03-01 00:00:00+00:00
    2017-03-01 10:00:00+00:00
    2017-03-01 12:00:00+00:00
    NaT
    NaT
    NaT
    >>> epoch = pd.DataFrame({"input.seen": [1488369600.5, 1.5e12]})  # 1.5e12: milliseconds
    >>> [str(t) for t in event_times(cfg, epoch)]
    ['2017-03-01 12:00:00.500000+00:00', 'NaT']
    """
    _, col = event_source(cfg)
    if col not in df.columns:
        return pd.Series(pd.NaT, index=df.index, dtype=UTC_NS)
    v = df[col]
    if col == "event_ts" or isinstance(v.dtype, pd.DatetimeTZDtype):
        return v.astype(UTC_NS)
    if pd.api.types.is_bool_dtype(v):
        return pd.Series(pd.NaT, index=df.index, dtype=UTC_NS)
    if pd.api.types.is_numeric_dtype(v):
        num, text = v.astype("float64"), pd.Series(False, index=v.index)
    else:  # text (or mixed): a number in it is epoch seconds too
        text = v.map(lambda x: isinstance(x, str)).astype(bool)
        stripped = v[text].astype(str).str.strip()
        num = pd.to_numeric(stripped, errors="coerce").reindex(v.index).astype("float64")
    lo, hi = (t.timestamp() for t in _YEARS)
    out = pd.to_datetime(num.where((num >= lo) & (num < hi)), unit="s",
                         utc=True).astype(UTC_NS)
    iso = text & num.isna()
    if iso.any():
        got = pd.to_datetime(v[iso].astype(str).str.strip(), utc=True, errors="coerce",
                             format="ISO8601")
        out[iso] = got.where((got >= _YEARS[0]) & (got < _YEARS[1])).astype(UTC_NS)
    return out
