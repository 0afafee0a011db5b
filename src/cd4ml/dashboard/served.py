"""What the page of one served model shows, gathered from the log, the timeline, the
reference profile, the alert store and the server's metrics.

- **activity** — requests, rows and latency per time bucket, read from the log with
  neither inputs, features nor feedback (``cd4ml.predlog.batches``): the cheap pass, which
  also gives the log's span the default window size is chosen from;
- **timeline** — ``cd4ml.pipeline.monitor_timeline.timeline``: each window judged as
  ``cd4ml monitor`` judges one (drift per column, prediction histogram, quality realized
  and estimated, protected groups);
- **feature** — one feature's reference summary beside the same column in one window
  of logged inputs (the monitor cache's ``window_frame``), as shares per bin or category;
- **alerts** — :func:`firing_alerts`, the one place the dashboard asks the metadata
  store for alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Activity", "activity", "auto_size", "feature_histogram", "firing_alerts",
           "window_rows", "AUTO_SIZES"]

#: window sizes tried, smallest first, for a time window chosen from the log's span
AUTO_SIZES = ("1m", "5m", "15m", "1h", "6h", "1d", "7d", "30d")
_SECONDS = {"m": 60, "h": 3600, "d": 86400}
#: at most this many windows when the size is chosen for the reader
MAX_WINDOWS = 48


@dataclass
class Activity:
    """Traffic and latency per time bucket (``starts`` in epoch seconds)."""

    bucket_s: float
    starts: list[float] = field(default_factory=list)
    requests: list[float] = field(default_factory=list)
    rows: list[float] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)
    first: float | None = None
    last: float | None = None
    total_rows: int = 0
    total_requests: int = 0
    endpoints: dict[str, int] = field(default_factory=dict)  # requests per endpoint


def _seconds(size: str) -> float:
    return float(size[:-1]) * _SECONDS[size[-1]]


def auto_size(by: str, first: float | None, last: float | None, rows: int) -> str:
    """A window size giving at most :data:`MAX_WINDOWS` windows over the log.

    >>> auto_size("time", 0, 3 * 86400, 100), auto_size("count", None, None, 12_000)
    ('6h', '500')
    """
    if by == "count":
        return str(max(50, math.ceil(rows / 24 / 50) * 50))
    span = (last - first) if first is not None and last is not None else 0.0
    return next((s for s in AUTO_SIZES if span / _seconds(s) <= MAX_WINDOWS), AUTO_SIZES[-1])


def activity(directory: Path, *, model: str, version: int, since: float | None,
             until: float | None, bucket_s: float | None = None) -> Activity:
    """Requests, rows and latency quantiles (over requests) per bucket of log time;
    ``bucket_s`` None: chosen from the span (as :func:`auto_size`)."""
    from cd4ml.predlog import batches

    tab = batches(directory, since=since, until=until, model=model, version=version,
                  with_features=False, with_inputs=False, feedback=False).read_all()
    if tab.num_rows == 0:
        return Activity(bucket_s or 3600.0)
    df = tab.select(["request_id", "ts", "latency_ms", "endpoint"]).to_pandas()
    ts = df["ts"].astype("int64").to_numpy() / 1e9
    first, last = float(ts.min()), float(ts.max())
    step = bucket_s or _seconds(auto_size("time", first, last, len(df)))
    per_req = pd.DataFrame({"rid": df["request_id"], "ts": ts, "lat": df["latency_ms"],
                            "ep": df["endpoint"]}).drop_duplicates("rid")
    out = Activity(step, first=first, last=last, total_rows=len(df),
                   total_requests=len(per_req),
                   endpoints={str(k): int(v) for k, v in per_req["ep"].value_counts().items()})
    rows_by = pd.Series(np.floor(ts / step)).value_counts().sort_index()
    reqs = per_req.assign(b=np.floor(per_req["ts"] / step)).groupby("b")["lat"]
    stats = reqs.agg(["count", lambda s: s.quantile(0.5), lambda s: s.quantile(0.95),
                      lambda s: s.quantile(0.99)])
    stats.columns = ["n", "p50", "p95", "p99"]
    for b, n_rows in rows_by.items():
        out.starts.append(float(b) * step)
        out.rows.append(float(n_rows))
        st = stats.loc[b] if b in stats.index else None
        out.requests.append(float(st["n"]) if st is not None else 0.0)
        for name in ("p50", "p95", "p99"):
            getattr(out, name).append(None if st is None else float(st[name]))
    return out


def window_rows(cfg: Any, root: Path, stores: Any, row: dict[str, Any], ref: Any,
                window: dict[str, Any], *, by: str, since: float | None,
                until: float | None) -> pd.DataFrame:
    """The logged rows of one timeline window (time: its bounds; count: its rows of the
    range, as the timeline cut them), from the monitor cache the timeline just filled."""
    from cd4ml.pipeline.monitor_cache import window_frame

    manifest = stores.artifacts.get_json(row["digest"])
    if by == "time":
        return window_frame(cfg, root, stores, row, ref, manifest, {}, since=window["start"],
                            until=window["end"])
    df = window_frame(cfg, root, stores, row, ref, manifest, {}, since=since, until=until)
    return df.iloc[int(window["start"]):int(window["end"])].reset_index(drop=True)


def feature_histogram(ref: Any, column: pd.Series | None, *, bins: int = 20,
                      top: int = 15) -> dict[str, Any]:
    """Reference and current shares of one feature: numeric on ``bins`` bins of the
    reference's range (values outside it in the end bins), categorical on the ``top``
    most frequent categories of either side (the rest as ``(other)``)."""
    from cd4ml.monitoring import ColumnSummary

    cur = ColumnSummary.of(column if column is not None else pd.Series([], dtype=object),
                           ref.kind)
    doc: dict[str, Any] = {"kind": ref.kind, "reference_rows": ref.rows,
                           "current_rows": cur.rows,
                           "missing": {"reference": ref.missing_rate,
                                       "current": cur.missing_rate}}
    if ref.kind == "numeric":
        if ref.n == 0:
            return {**doc, "labels": [], "reference": [], "current": []}
        lo, hi = float(ref.values[0]), float(ref.values[-1])
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        r = np.histogram(np.clip(ref.values.astype(float), lo, hi), edges,
                         weights=ref.counts)[0]
        c = np.histogram(np.clip(cur.values.astype(float), lo, hi), edges,
                         weights=cur.counts)[0] if cur.n else np.zeros(bins)
        labels = [f"{edges[i]:.4g}" for i in range(bins)]
    else:
        rs = dict(zip(map(str, ref.values), ref.counts.tolist(), strict=True))
        cs = dict(zip(map(str, cur.values), cur.counts.tolist(), strict=True))
        rn, cn = max(sum(rs.values()), 1), max(sum(cs.values()), 1)
        keys = sorted(set(rs) | set(cs), key=lambda k: -max(rs.get(k, 0) / rn,
                                                             cs.get(k, 0) / cn))
        labels, rest = keys[:top], keys[top:]
        r = np.array([rs.get(k, 0) for k in labels] + ([sum(rs.get(k, 0) for k in rest)]
                                                       if rest else []), dtype=float)
        c = np.array([cs.get(k, 0) for k in labels] + ([sum(cs.get(k, 0) for k in rest)]
                                                       if rest else []), dtype=float)
        labels = labels + (["(other)"] if rest else [])
        doc["new"] = sorted(set(cs) - set(rs))[:10]
    return {**doc, "labels": labels,
            "reference": (r / max(r.sum(), 1)).tolist(),
            "current": (c / max(c.sum(), 1)).tolist() if c.sum() else []}


def firing_alerts(metadata: Any, subject: str) -> list[dict[str, Any]] | None:
    """The firing alerts of ``subject`` (``model@version``), newest first; None when the
    store has no alert table (a cd4ml without alert rules), so the page can say so."""
    list_alerts = getattr(metadata, "list_alerts", None)
    if list_alerts is None:
        return None
    return list(list_alerts(subject=subject, states=["firing"], current=True))
