"""``cd4ml log status``, ``query`` and ``export``: the prediction log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cd4ml.cli.common import (HELP_MARKUP, Col, Json, Project, Sets, Since, Until, emit_json,
                              out, print_table)

__all__ = ["register", "log_app"]

log_app = typer.Typer(help="The prediction log: status, query, export.", no_args_is_help=True,
                      rich_markup_mode=HELP_MARKUP)
VersionOpt = Annotated[int | None, typer.Option("--version", help="only this model version")]


def _log_dir(project: Path, set_: list[str] | None) -> tuple[Any, Path]:
    from cd4ml.config import load_config

    root = project.resolve()
    cfg, _ = load_config(root, set_)
    return cfg, cfg.serving.log.folder_in(root)


def _utc(v: float | None) -> str:
    """Epoch seconds as ``2026-12-04 19:48:03`` (UTC); empty for none."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if v else ""


@log_app.command("status")
def log_status(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Segments, record counts, and records lost to crashes (never silent)."""
    from cd4ml.predlog import recover_losses, status
    from cd4ml.predlog.segments import LOG_FORMAT, READ_FORMATS

    _, d = _log_dir(project, set_)
    recover_losses(d)
    st = status(d)
    if json_:
        emit_json(st)
        return
    print_table([Col("segment", whole=True), Col("requests", whole=True),
                 Col("predictions", whole=True), Col("feedback", whole=True),
                 Col("MB", whole=True), Col("first", whole=True), Col("last", whole=True)],
                [[sg["segment"], str(sg["requests"]), str(sg["predictions"]),
                  str(sg["feedback"]), f"{sg['bytes'] / 1e6:.2f}", _utc(sg["first"]),
                  _utc(sg["last"])] for sg in st["segments"]], optional=4)
    out.print(f"in {d}", markup=False, soft_wrap=True)  # a path: never cut
    for sg in st["segments"]:
        if sg["format"] not in (None, *READ_FORMATS):  # None: no table in it yet
            out.print(f"[yellow]{sg['segment']} is in log format {sg['format']}[/]: this "
                      f"cd4ml reads formats {', '.join(map(str, READ_FORMATS))} (writes "
                      f"{LOG_FORMAT}); move it out of {d} to read the rest")
    for sg in st["segments"]:
        if sg.get("problem"):
            out.print(f"[red]{sg['segment']} cannot be read[/] ({sg['problem']}): skipped by "
                      f"readers; the next server to start sets it aside")
    for x in st["set_aside"]:
        out.print(f"[yellow]set aside[/]: {x['file']} ({x['bytes']:,} bytes; was "
                  f"{x['original']}: {x['problem'] or 'unreadable'})")
    if st["lost_total"]:
        out.print(f"[red]{st['lost_total']} record(s) lost[/] in {len(st['losses'])} "
                  f"session(s):")
        for x in st["losses"]:
            out.print(f"  {_utc(x['detected_at'])} session {x['session']} pid {x['pid']}: "
                      f"{x['lost']} of {x['accepted']} ({x['reason']})")
    else:
        out.print("no records lost")


@log_app.command("query")
def log_query(project: Project = Path("."), set_: Sets = None, since: Since = None,
              until: Until = None, version: VersionOpt = None,
              request_id: Annotated[str | None, typer.Option("--request-id")] = None,
              limit: Annotated[int, typer.Option("--limit")] = 20,
              json_: Json = False) -> None:
    """The newest logged requests in a time window (and of a version)."""
    from cd4ml.predlog import parse_time, query

    _, d = _log_dir(project, set_)
    recs = query(d, since=parse_time(since), until=parse_time(until), version=version,
                 request_id=request_id, limit=limit, newest_first=True)
    if json_:
        emit_json(recs)
        return
    events = any(r["event_ts"] is not None for r in recs)  # X-Event-Time: its column
    out.print(f"{len(recs)} request(s), newest first")
    cols = [Col("time (UTC)", whole=True), *([Col("event time (UTC)", whole=True)]
                                             if events else []),
            Col("request id", whole=True), Col("version", whole=True), Col("predictions"),
            Col("endpoint", whole=True), Col("rows", whole=True), Col("ms", whole=True),
            Col("inputs")]
    rows = []
    for r in recs:
        ins = json.dumps(r["inputs"])
        outs = ", ".join(f"{v:,.1f}" if not isinstance(v, list) else  # several per row
                         "(" + ", ".join(f"{x:.3g}" for x in v) + ")"
                         for v in r["outputs"][:3])
        ev = (["" if r["event_ts"] is None else _utc(r["event_ts"])] if events else [])
        rows.append([_utc(r["ts"]), *ev, r["request_id"], str(r["version"]),
                     outs + (" …" if len(r["outputs"]) > 3 else ""), r["endpoint"],
                     str(r["n_rows"]), f"{r['latency_ms']:.2f}",
                     ins[:60] + (" …" if len(ins) > 60 else "")])
    print_table(cols, rows, optional=4)  # --json has every field


@log_app.command("export")
def log_export(output: Annotated[Path, typer.Option("--output", "-o", help="a .parquet file")],
               project: Project = Path("."), set_: Sets = None, since: Since = None,
               until: Until = None, version: VersionOpt = None,
               with_request: Annotated[bool, typer.Option(
                   "--with-request", help="include each request body as received")] = False,
               json_: Json = False) -> None:
    """Write one row per prediction (inputs, features, output, feedback) to Parquet."""
    from cd4ml.predlog import export_parquet, parse_time

    _, d = _log_dir(project, set_)
    n = export_parquet(d, output, since=parse_time(since), until=parse_time(until),
                       version=version, with_request=with_request)
    if json_:
        emit_json({"predictions": n, "output": str(output)})
        return
    out.print(f"{n} prediction(s) written to {output}")


def register(app: typer.Typer) -> None:
    """Add ``log status``, ``log query`` and ``log export`` to the ``cd4ml`` app."""
    app.add_typer(log_app, name="log")
