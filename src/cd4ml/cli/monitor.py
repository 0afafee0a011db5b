"""``cd4ml monitor``: drift, skew and quality of a served version, and the alert rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cd4ml.cli.common import Json, Project, Sets, Since, Until, emit_json, out
from cd4ml.errors import Cd4mlError

__all__ = ["register"]


def monitor_cmd(project: Project = Path("."), set_: Sets = None, json_: Json = False,
                model: Annotated[str | None, typer.Option(
                    "--model", help="model name (default: models.name)")] = None,
                version: Annotated[str | None, typer.Option(
                    "--version", help="version number or alias (default: serving.alias)")
                                   ] = None,
                data: Annotated[bool, typer.Option(
                    "--data", help="snapshot the sources anew and compare what is new since "
                                   "training with the version's reference")] = False,
                since: Since = None, until: Until = None,
                last: Annotated[int | None, typer.Option(
                    "--last", min=1, help="only the latest N logged rows (--by event: "
                    "by event time)")] = None,
                by: Annotated[str, typer.Option(
                    "--by", help="time: --since/--until/--last are of log time; event: of "
                    "event time (a forecast's date, monitoring.event_time, else the "
                    "request's X-Event-Time; rows without one are left out and "
                    "counted)")] = "time",
                alerts: Annotated[bool, typer.Option(
                    "--alerts/--no-alerts", help="evaluate the alert rules (monitoring."
                    "alerts) and show the alerts")] = True,
                every: Annotated[float | None, typer.Option(
                    "--every", min=0.1, help="only evaluate the alert rules, every this many "
                    "seconds, until stopped (what cd4ml serve runs)")] = None,
                metrics_url: Annotated[str | None, typer.Option(
                    "--metrics-url", help="a server's /metrics, for errors.rate and "
                    "refused.rate")] = None,
                parent: Annotated[int | None, typer.Option(
                    "--parent", hidden=True, help="with --every: stop when this pid is "
                    "no longer the parent")] = None) -> None:
    """Drift, skew and quality of a served version against its reference profile: its
    prediction log (a window of log time or event time, or the last N rows), and with
    --data new snapshots of its sources; then the alert rules, evaluated by one process
    at a time."""
    from cd4ml.monitoring.render import print_alerts, print_report
    from cd4ml.pipeline.alerting import evaluate_under_lock, watch_alerts
    from cd4ml.pipeline.monitor import monitor

    if by not in ("time", "event"):
        raise Cd4mlError(f"--by {by!r}: expected 'time' (log time) or 'event' (event time)")
    t0, t1 = _option_time("--since", since), _option_time("--until", until)
    if t0 is not None and t1 is not None and t1 <= t0:
        raise Cd4mlError(f"--until {until!r}: expected a time after --since {since!r}")
    scrape = _scraper(metrics_url)
    if every is not None:  # until stopped: --json says what started, alerts go to the log
        if json_:
            import os

            emit_json({"command": "monitor", "project": str(project.resolve()),
                       "every_s": every, "metrics_url": metrics_url, "pid": os.getpid()})
        watch_alerts(project, set_, every=every, metrics_text=scrape, parent=parent)
        return
    log = not data or since is not None or until is not None or last is not None \
        or by != "time"
    doc = monitor(project, set_, model=model, version=version, data=data, log=log,
                  since=t0, until=t1, last=last, by=by)
    if alerts and model is None and version is None:
        doc["alerts"] = evaluate_under_lock(project, set_, metrics_text=scrape) or {
            "note": "another process is evaluating the alert rules now"}
    if json_:
        emit_json(doc)
        return
    print_report(out, doc)
    if "alerts" in doc:
        print_alerts(out, doc["alerts"])


def _option_time(option: str, text: str | None) -> float | None:
    """Epoch seconds of a --since/--until value; a Cd4mlError naming the option."""
    from cd4ml.predlog import parse_time

    try:
        return parse_time(text)
    except Cd4mlError:
        raise Cd4mlError(f"{option} {text!r}: expected an ISO date or date-time (UTC unless "
                         f"it gives an offset: 2017-01-01, 2017-01-01T10:00) or an age "
                         f"such as 30m, 2h, 7d") from None


def _scraper(url: str | None) -> Any:
    """A callable returning a server's Prometheus text (None without a URL)."""
    if url is None:
        return None

    def scrape() -> str:
        import httpx

        try:
            return httpx.get(url, timeout=5).text
        except httpx.HTTPError:  # the server is starting or gone: rates undefined
            return ""
    return scrape


def register(app: typer.Typer) -> None:
    """Add ``monitor`` to the ``cd4ml`` app."""
    app.command("monitor")(monitor_cmd)
