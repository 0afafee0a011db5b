"""Evaluating the alert rules: each rule's metric over its window, one state-machine step,
the result stored (compare-and-set: two evaluators at once fire an alert once), and a
transition into firing or resolved sent to the webhook.

Windows are computed once per distinct window of the rules (a log-time window is the
last ``size`` seconds before ``now``; a count window the last N rows). An event window
is the last ``size`` of event time (a forecast's date, a tabular model's
``monitoring.event_time`` input, else the request's ``X-Event-Time``) ending at the
event-time watermark, not at the wall clock: the latest event time, among the rows
logged before ``now``, that is not after ``now``; the window is ``(watermark - size,
watermark]``. A replay of 2017 data carries 2017 event times, and is judged on its
latest 2017 rows whenever the rules run. Rows without an event time are left out (the
rule's ``window`` says how many); with none at all the window is empty: "insufficient
data", never an alarm. The rules watch the version serving the alias
(subject ``model@version``). ``errors.rate`` and ``refused.rate`` come from the server's
own counters when the evaluator runs inside ``cd4ml serve`` (``metrics_text``), since
its workers started; elsewhere they are undefined ("insufficient data", never an alarm).

Inside ``cd4ml serve`` one process evaluates at a time: :func:`evaluate_under_lock`
takes the project's monitor lock without waiting, and a worker that does not get it
skips the round.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate_alerts", "evaluate_under_lock", "watch_alerts", "server_rates"]


def server_rates(text: str) -> dict[str, float | None]:
    """``errors.rate`` (5xx share), ``refused.rate`` (4xx share) and ``rows`` of the
    server's request counters (Prometheus text), predicting endpoints only."""
    from prometheus_client.parser import text_string_to_metric_families

    total = errors = refused = 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name != "cd4ml_http_requests":
            continue
        for s in fam.samples:
            if not s.name.endswith("_total"):
                continue
            ep = s.labels.get("endpoint", "")
            if not (ep.startswith("/predict") or ep.startswith("/v2/models")
                    or ep.startswith("/invocations")):
                continue
            status = int(s.labels.get("status", "0") or 0)
            total += s.value
            errors += s.value if status >= 500 else 0.0
            refused += s.value if 400 <= status < 500 else 0.0
    if total == 0:
        return {"errors.rate": None, "refused.rate": None, "requests": 0.0}
    return {"errors.rate": errors / total, "refused.rate": refused / total,
            "requests": total}


def _event_window(frame: pd.DataFrame, now: float,
                  seconds: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of ``(watermark - seconds, watermark]`` of event time, the watermark the
    latest event time not after ``now`` among the rows logged before ``now``; and what
    the window was (``by``, ``watermark``, ``rows``, ``without_event_time``)."""
    import pandas as pd

    at = pd.Timestamp(now, unit="s", tz="UTC")
    ev = frame["event_time"]
    seen = frame[((frame["ts"] < at) & (ev <= at)).to_numpy()]
    info: dict[str, Any] = {"by": "event", "watermark": None,
                            "without_event_time": frame.attrs["without_event_time"],
                            "event_time": frame.attrs["event_time"]}
    if not len(seen):
        info.update(rows=0, note="no row logged before now has an event time up to now")
        return seen, info
    mark = seen["event_time"].max()
    part = seen[(seen["event_time"] > mark - pd.Timedelta(seconds=seconds)).to_numpy()]
    info.update(watermark=mark.isoformat(), rows=len(part))
    return part.reset_index(drop=True), info


def _rows_for(metric: str, metrics: dict[str, Any], quality_rows: int) -> int:
    if metric.startswith("quality."):
        return quality_rows
    if metric in ("errors.rate", "refused.rate"):
        return int(metrics.get("requests") or 0)
    return int(metrics.get("rows") or 0)


def evaluate_alerts(project_dir: str | Path = ".", overrides: list[str] | None = None, *,
                    now: float | None = None, metrics_text: Callable[[], str] | None = None,
                    send: bool = True, sleep: Callable[[float], None] = time.sleep,
                    ) -> dict[str, Any]:
    """One evaluation round of every rule; the transitions it made and every alert's
    current state."""
    from cd4ml.monitoring import DriftSettings, reference_of
    from cd4ml.monitoring.alerts import AlertState, Observation, step
    from cd4ml.monitoring.webhook import WebhookSender
    import numpy as np

    from cd4ml.pipeline.monitor_cache import window_frame
    from cd4ml.pipeline.monitor_log import judge_frame
    from cd4ml.pipeline.run import open_project

    now = time.time() if now is None else now
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    cfg, _, stores, root = open_project(project_dir, overrides)
    rules = cfg.monitoring.alerts.rules
    settings = DriftSettings.from_config(cfg.monitoring.drift)
    hook = cfg.monitoring.alerts.webhook
    with stores:
        row = stores.metadata.resolve(cfg.models.name, cfg.serving.alias)
        subject = f"{cfg.models.name}@{row['version']}"
        found = reference_of(row, stores.artifacts)
        manifest = stores.artifacts.get_json(row["digest"])
        server = server_rates(metrics_text()) if metrics_text is not None else {}
        judged: dict[tuple[str, Any], dict[str, Any]] = {}
        windows: dict[tuple[str, Any], dict[str, Any]] = {}
        events: pd.DataFrame | None = None  # the version's log by event time, read once
        memo: dict[str, Any] = {}
        sender = WebhookSender(hook, store=stores.metadata, sleep=sleep) if hook and send \
            else None
        previous = stores.metadata.alert_states(subject)
        done, transitions = [], []
        for rule in rules:
            w = rule.window
            key = (w.by, w.size)
            if key not in judged:
                if found.reference is None:
                    judged[key] = {"metrics": {}, "quality": {"rows": 0}}
                else:
                    if w.by == "event":
                        if events is None:  # event times up to now, read once
                            events = window_frame(
                                cfg, root, stores, row, found.reference, manifest, memo,
                                since=None, until=float(np.nextafter(now, np.inf)),
                                by="event", settings=settings)
                        df, windows[key] = _event_window(events, now, w.seconds)
                    else:
                        since = None if w.by == "count" else now - w.seconds
                        df = window_frame(cfg, root, stores, row, found.reference,
                                          manifest, memo, since=since, until=now,
                                          last=w.rows if w.by == "count" else None,
                                          settings=settings)
                    judged[key] = judge_frame(cfg, stores, row, found.reference, settings,
                                              df, manifest, memo)
            doc = judged[key]
            metrics = {**doc["metrics"], **server}
            value = metrics.get(rule.metric)
            obs = Observation(rule=rule.name, subject=subject, value=value,
                              rows=_rows_for(rule.metric, metrics,
                                             int(doc["quality"].get("rows") or 0)),
                              at=at, detail={"window": f"{w.by} {w.size}",
                                             "reference": found.state,
                                             **({"event": windows[key]} if key in windows
                                                else {})})
            prev_row = previous.get(rule.name)
            prev = AlertState.from_row(prev_row) if prev_row is not None else None
            state, change = step(rule, prev, obs)
            wrote = stores.metadata.write_alert_step(state, change, previous=prev)
            if not wrote.written:  # another evaluator moved it first: theirs stands
                done.append({"rule": rule.name, "state": (wrote.found or {}).get("state"),
                             "note": "evaluated elsewhere meanwhile"})
                continue
            done.append({"rule": rule.name, "state": state.state, "value": value,
                         "threshold": rule.threshold, "message": state.message,
                         "episode": state.episode, "rows": obs.rows,
                         "window": {"by": w.by, "size": w.size, **windows.get(key, {})}})
            if change is not None:
                transitions.append({"rule": rule.name, "from": change.from_state,
                                    "to": change.to_state, "message": change.message})
                if sender is not None and change.notified:
                    sender.deliver(change, alert_id=wrote.alert_id)
        return {"subject": subject, "at": at.isoformat(), "reference": found.state,
                "rules": done, "transitions": transitions,
                "alerts": [dict(a) for a in stores.metadata.list_alerts(subject=subject,
                                                                        current=True)]}


def evaluate_under_lock(project_dir: str | Path, overrides: list[str] | None = None, *,
                        metrics_text: Callable[[], str] | None = None,
                        ) -> dict[str, Any] | None:
    """:func:`evaluate_alerts` if no other process is evaluating (None if one is)."""
    from cd4ml.errors import LockedError
    from cd4ml.store import project_lock

    lock = Path(project_dir).resolve() / ".cd4ml" / "monitor.lock"
    try:
        with project_lock(lock, timeout_s=0):
            return evaluate_alerts(project_dir, overrides, metrics_text=metrics_text)
    except LockedError:
        return None


def watch_alerts(project_dir: str | Path, overrides: list[str] | None = None, *,
                 every: float, metrics_text: Callable[[], str] | None = None,
                 parent: int | None = None, rounds: int | None = None) -> None:
    """Evaluate under the lock every ``every`` seconds (``cd4ml serve`` runs this in a
    process of its own, so the model server's workers never wait on it); stops after
    ``rounds``, or when ``parent`` (a pid) is gone. A failing round is logged, not fatal:
    the next one tries again."""
    import logging
    import os

    log = logging.getLogger("cd4ml.monitor")
    done = 0
    while rounds is None or done < rounds:
        if parent is not None and os.getppid() != parent:
            return
        started = time.monotonic()
        try:
            res = evaluate_under_lock(project_dir, overrides, metrics_text=metrics_text)
            if res is not None:
                for t in res["transitions"]:
                    log.warning("alert %s %s -> %s: %s", t["rule"], t["from"], t["to"],
                                t["message"])
        except Exception as exc:  # noqa: BLE001 - a round must not end the watcher
            log.error("alert evaluation failed: %s", exc)
        done += 1
        if rounds is not None and done >= rounds:
            return
        time.sleep(max(0.0, every - (time.monotonic() - started)))
