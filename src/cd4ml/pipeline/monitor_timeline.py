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

__all__ = ["timeline", "window_size", "MAX_BUCKETS"]

#: windows of time a timeline tells apart by their blocks; blocks spread over more (event
#: times scattered over years in small windows) are read and judged all at once
MAX_BUCKETS = 5000

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


def _count_cuts(rows: int, size: int) -> list[tuple[int, int]]:
    """(start row, end row) of each count window of ``rows`` rows, the last possibly
    shorter."""
    return [(i, min(i + size, rows)) for i in range(0, rows, size)]


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
    from cd4ml.pipeline.monitor_cache import PartCache, cache_path, scope_of
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
        outs = output_map(manifest, list(ref.outputs))
        main = next(iter(ref.outputs), None)
        scope = scope_of(cfg, row, settings)
        judging = (cfg.monitoring.model_dump(mode="json"),
                   cfg.evaluation.model_dump(mode="json"), row.get("metrics"))
        with PartCache(cache_path(root)) as cache:
            if by == "count":
                _by_count(doc, cfg, root, stores, row, ref, settings, manifest, memo, cache,
                          scope=scope, judging=judging, size=size, step=int(step),
                          since=since, until=until, outs=outs, main=main)
            else:
                _by_time(doc, cfg, root, stores, row, ref, settings, manifest, memo, cache,
                         scope=scope, judging=judging, by=by, size=size, step=float(step),
                         since=since, until=until, outs=outs, main=main)
        doc.update(reused=cache.reused, decoded=cache.written, read=cache.read)
        return doc


def _by_count(doc: dict[str, Any], cfg: Any, root: Path, stores: Any, row: dict[str, Any],
              ref: Any, settings: Any, manifest: dict[str, Any], memo: dict[str, Any],
              cache: Any, *, scope: str, judging: Any, size: Any, step: int,
              since: float | None, until: float | None, outs: dict[str, str],
              main: str | None) -> None:
    """Count windows: the range's rows read once and cut; a window whose rows and
    feedback have the fingerprint of its last judgement is not judged again."""
    from cd4ml.pipeline.monitor_cache import fingerprint, window_frame

    df = window_frame(cfg, root, stores, row, ref, manifest, memo, since=since, until=until,
                      settings=settings, cache=cache)
    for start, end in _count_cuts(len(df), step):
        part = df.iloc[start:end].reset_index(drop=True)
        key = f"count|{size}|{since}|{start}|{end}"
        mark = fingerprint(part, judging)
        win = cache.judged(scope, key, mark)
        if win is None:
            win = _window(cfg, stores, row, ref, settings, part, manifest, memo, by="count",
                          start=start, end=end, outs=outs, main=main)
            cache.keep(scope, key, mark, win)
        doc["windows"].append(win)


def _by_time(doc: dict[str, Any], cfg: Any, root: Path, stores: Any, row: dict[str, Any],
             ref: Any, settings: Any, manifest: dict[str, Any], memo: dict[str, Any],
             cache: Any, *, scope: str, judging: Any, by: str, size: Any, step: float,
             since: float | None, until: float | None, outs: dict[str, str],
             main: str | None) -> None:
    """Windows of log or event time, each read on its own: one whose blocks are those it
    was judged on and whose requests got no feedback since (new feedback is what the
    log's feedback holds past the marks kept at the last timeline) is not read at all."""
    import hashlib
    import json

    from cd4ml.pipeline.event_time import event_source
    from cd4ml.pipeline.monitor_cache import block_parts, window_frame
    from cd4ml.predlog import feedback_after, feedback_marks

    directory = cfg.serving.log.folder_in(root)
    name = f"marks|{by}|{size}"
    now_marks, old_marks = feedback_marks(directory), cache.marks(scope, name)
    fresh = feedback_after(directory, old_marks) if old_marks is not None else None
    keyed = fresh is None or bool(fresh["keys"].notna().any())  # may match any window
    new_ids = set() if fresh is None else set(fresh["request_id"].dropna().astype(str))
    parts = block_parts(cfg, root, stores, row, ref, manifest, memo, since=since,
                        until=until, by=by, settings=settings, cache=cache)
    if by == "event":
        doc.update(event_time=event_source(cfg)[0],
                   without_event_time=sum(p.no_event for p in parts))
    spans = []
    for p in parts:
        lo, hi = (p.ev_min, p.ev_max) if by == "event" else (p.ts_min, p.ts_max)
        if (p.rows - (p.no_event if by == "event" else 0)) <= 0 or not np.isfinite(lo):
            continue
        lo, hi = max(lo, -np.inf if since is None else since), \
            min(hi, np.inf if until is None else until)
        if lo <= hi:
            spans.append((int(np.floor(lo / step)), int(np.floor(hi / step)), p.key))
    buckets: dict[int, list[str]] = {}
    whole: pd.DataFrame | None = None  # the range read at once, when it had to be
    if sum(b - a + 1 for a, b, _ in spans) <= MAX_BUCKETS:
        for a, b, key in spans:
            for k in range(a, b + 1):
                buckets.setdefault(k, []).append(key)
    elif spans:  # blocks spread over more windows than can be told apart: judge them all
        keyed = True
        lo_k, hi_k = min(a for a, _, _ in spans), max(b for _, b, _ in spans)
        whole = window_frame(cfg, root, stores, row, ref, manifest, memo, since=since,
                             until=until, by=by, settings=settings, cache=cache)
        t = (whole["event_time"] if by == "event" else whole["ts"]).astype(
            "int64").to_numpy() / 1e9
        for k in np.unique(np.floor(t / step).astype(np.int64)).tolist():
            if lo_k <= k <= hi_k:
                buckets[k] = [f"all:{len(whole)}"]
    keys: dict[int, tuple[str, str]] = {}
    got: dict[int, dict[str, Any] | None] = {}
    for k in sorted(buckets):
        start, end = float(k * step), float((k + 1) * step)
        lo = start if since is None else max(start, since)
        hi = end if until is None else min(end, until)
        keys[k] = (f"{by}|{size}|{lo}|{hi}", hashlib.blake2b(json.dumps(
            [sorted(buckets[k]), judging], sort_keys=True, default=str).encode(),
            digest_size=16).hexdigest())
        got[k] = None if keyed else cache.judged(scope, *keys[k], touched=new_ids)
    todo = [k for k, win in got.items() if win is None]
    runs: list[list[int]] = []
    for k in todo:  # consecutive windows to judge again are read together
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    for run in runs if whole is None else [todo]:
        lo = run[0] * step if since is None else max(run[0] * step, since)
        hi = (run[-1] + 1) * step if until is None else min((run[-1] + 1) * step, until)
        df = whole if whole is not None else window_frame(
            cfg, root, stores, row, ref, manifest, memo, since=lo, until=hi, by=by,
            settings=settings, cache=cache)
        t = (df["event_time"] if by == "event" else df["ts"]).astype("int64").to_numpy() / 1e9
        bucket = np.floor(t / step).astype(np.int64)
        for k in run:
            part = df[bucket == k].reset_index(drop=True)
            if not len(part):  # its blocks' range reaches it, none of their rows do
                continue
            got[k] = _window(cfg, stores, row, ref, settings, part, manifest, memo, by=by,
                             start=float(k * step), end=float((k + 1) * step), outs=outs,
                             main=main)
            cache.keep(scope, *keys[k], got[k], ids=set(part["request_id"].astype(str)))
    doc["windows"] = [win for _, win in sorted(got.items()) if win is not None]
    cache.set_marks(scope, name, now_marks)


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
