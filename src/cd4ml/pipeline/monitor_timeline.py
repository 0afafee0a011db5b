"""Monitoring over time: a version's log cut into windows, each judged as ``cd4ml monitor``
judges one (``monitor_log``), for the dashboard's charts and for alert rules.

Windows are consecutive: by log time (``by="time"``, ``size`` an age such as ``1h`` or
``1d``, aligned to the epoch in UTC), by count (``by="count"``, ``size`` rows, the last
window possibly shorter) or by event time (``by="event"``, ``size`` an age, aligned to
the epoch in UTC like log time: a forecast's date, a tabular model's
``monitoring.event_time`` input, else the request's ``X-Event-Time``; ``since`` and
``until`` then bound event time, and the rows without one are left out and counted in
the document's ``without_event_time``). Each window gives its metrics (the names alert
rules use), its per-column drift scores and states, the realized and estimated quality,
and the output distribution (a histogram on the reference's bins) beside the
reference's.

The rows come from the monitor cache (``monitor_cache``): a timeline decodes only the
blocks of the log no window read before, and calls no model for the rows of the others
(their calibrated probabilities and the training path's features are cached); what it
still does per window is the statistics on the window's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["timeline", "window_size"]

def window_size(by: str, size: str | int) -> float | int:
    """Seconds of a time or event window (``"1d"``, ``"1h30m"``: the durations config
    takes, ``config.monitoring.parse_duration``) or rows of a count window; a ValueError
    naming the value otherwise.

    >>> window_size("time", "1h30m"), window_size("event", "7d"), window_size("count", 500)
    (5400.0, 604800.0, 500)
    """
    from cd4ml.config.monitoring import parse_duration

    if by == "count":
        n = int(size)
        if n < 1:
            raise ValueError(f"window size {size!r}: a count window needs at least 1 row")
        return n
    if by not in ("time", "event"):
        raise ValueError(f"window by {by!r}: expected 'time', 'count' or 'event'")
    try:
        seconds = parse_duration(size)
    except ValueError as exc:
        raise ValueError(f"window size {size!r}: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"window size {size!r}: expected an age such as 15m, 1h, 1d or 7d")
    return seconds


def _cuts(df: pd.DataFrame, by: str, size: float | int) -> list[tuple[int, int, Any, Any]]:
    """(start row, end row, start, end) of each window of the sorted frame (by event:
    sorted by ``event_time``, which the windows cut)."""
    if not len(df):
        return []
    if by == "count":
        n = int(size)
        return [(i, min(i + n, len(df)), i, min(i + n, len(df)))
                for i in range(0, len(df), n)]
    ts = df["event_time" if by == "event" else "ts"].astype("int64").to_numpy() / 1e9
    bucket = np.floor(ts / size).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(df)]
    return [(int(a), int(b), float(bucket[a] * size), float((bucket[a] + 1) * size))
            for a, b in zip(starts, ends, strict=True)]


def _histogram(ref: Any, values: np.ndarray, bins: int = 20) -> dict[str, Any]:
    """Shares per bin of the reference's range, for the reference and the window."""
    if ref is None or ref.n == 0:
        return {"edges": [], "reference": [], "current": []}
    lo, hi = float(ref.values[0]), float(ref.values[-1])
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    r = np.histogram(np.clip(ref.values, lo, hi), edges, weights=ref.counts)[0]
    v = values[np.isfinite(values)]
    c = np.histogram(np.clip(v, lo, hi), edges)[0]
    return {"edges": edges.tolist(), "reference": (r / max(r.sum(), 1)).tolist(),
            "current": (c / max(c.sum(), 1)).tolist()}


def timeline(project_dir: str | Path = ".", overrides: list[str] | None = None, *,
             model: str | None = None, version: str | None = None, by: str = "time",
             size: str | int = "1d", since: float | None = None,
             until: float | None = None) -> dict[str, Any]:
    """The version's windows, oldest first, each with what ``cd4ml monitor`` reports
    (``since``/``until``: epoch seconds of log time, or of event time with ``by="event"``)."""
    from cd4ml.monitoring import DriftSettings, reference_of
    from cd4ml.pipeline.monitor_cache import (PartCache, cache_path, fingerprint, scope_of,
                                              window_frame)
    from cd4ml.pipeline.monitor_log import output_map
    from cd4ml.pipeline.run import open_project

    step = window_size(by, size)
    cfg, _, stores, root = open_project(project_dir, overrides)
    name = model or cfg.models.name
    settings = DriftSettings.from_config(cfg.monitoring.drift)
    with stores:
        row = stores.metadata.resolve(name, version or cfg.serving.alias)
        found = reference_of(row, stores.artifacts)
        doc: dict[str, Any] = {"model": name, "version": row["version"], "by": by,
                               "size": size, "reference": {"state": found.state,
                                                           "message": found.message},
                               "windows": []}
        if found.reference is None:
            return doc
        ref = found.reference
        manifest = stores.artifacts.get_json(row["digest"])
        memo: dict[str, Any] = {}
        with PartCache(cache_path(root)) as cache:
            df = window_frame(cfg, root, stores, row, ref, manifest, memo, since=since,
                              until=until, by="event" if by == "event" else "time",
                              settings=settings, cache=cache)
            if by == "event":
                doc.update(event_time=df.attrs["event_time"],
                           without_event_time=df.attrs["without_event_time"])
            outs = output_map(manifest, list(ref.outputs))
            main = next(iter(ref.outputs), None)
            scope = scope_of(cfg, row, settings)
            judging = (cfg.monitoring.model_dump(mode="json"),
                       cfg.evaluation.model_dump(mode="json"), row.get("metrics"))
            for a, b, start, end in _cuts(df, by, step):
                part = df.iloc[a:b].reset_index(drop=True)
                key = f"{by}|{size}|{start}|{end}"
                mark = fingerprint(part, judging)
                win = cache.judged(scope, key, mark)
                if win is None:
                    win = _window(cfg, stores, row, ref, settings, part, manifest, memo,
                                  by=by, start=start, end=end, outs=outs, main=main)
                    cache.keep(scope, key, mark, win)
                doc["windows"].append(win)
        doc["reused"], doc["decoded"] = cache.reused, cache.written
        return doc


def _window(cfg: Any, stores: Any, row: dict[str, Any], ref: Any, settings: Any,
            part: pd.DataFrame, manifest: dict[str, Any], memo: dict[str, Any], *, by: str,
            start: Any, end: Any, outs: dict[str, str], main: str | None) -> dict[str, Any]:
    """One window's entry of the timeline."""
    from cd4ml.pipeline.monitor_log import judge_frame

    judged = judge_frame(cfg, stores, row, ref, settings, part, manifest, memo)
    col = outs.get(main) if main else None
    values = part[col].to_numpy(np.float64) if col in part.columns else np.array([])
    win: dict[str, Any] = {"start": start, "end": end, "rows": len(part),
                           "first_ts": str(part["ts"].min()), "last_ts": str(part["ts"].max())}
    if by == "event":
        win.update(first_event=str(part["event_time"].iloc[0]),
                   last_event=str(part["event_time"].iloc[-1]))
    return {**win, "metrics": judged["metrics"],
            "drift": {c: {"state": d["state"], "drifted": d["drifted"], "score": d["score"],
                          "method": d["method"]}
                      for c, d in judged["drift"]["columns"].items()},
            "quality": judged["quality"], "estimated": judged.get("estimated"),
            "prediction": {"output": main,
                           "histogram": _histogram(ref.outputs.get(main), values)}}
