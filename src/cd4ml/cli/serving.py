"""``cd4ml serve``, ``cd4ml ui`` and ``cd4ml predict``: the model server (with the
dashboard and the admin API beside it), the dashboard alone, and batch scoring."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cd4ml.cli.common import STDERR_FD, Json, Project, Sets, emit_json, err, out

__all__ = ["register", "serve_app", "UI_PREFIX"]

_UI_ENV = "CD4ML_UI"
#: where ``cd4ml serve`` puts the dashboard
UI_PREFIX = "/ui"


def serve(project: Project = Path("."), set_: Sets = None,
          port: Annotated[int | None, typer.Option("--port")] = None,
          host: Annotated[str | None, typer.Option("--host")] = None,
          workers: Annotated[int | None, typer.Option(
              "--workers", min=1, help="worker processes (default serving.workers)")] = None,
          ui: Annotated[bool, typer.Option(
              "--ui/--no-ui", help="the dashboard at /ui beside the model server")] = True,
          json_: Annotated[bool, typer.Option(
              "--json", help="once the model is ready, one JSON document on stdout: url, "
                             "model, version, dashboard, admin, workers, pid (logs: stderr)")
          ] = False) -> None:
    """Serve the production model: form at /, POST /predict, /v2 and /invocations, the
    dashboard at /ui, the admin API at /admin (with CD4ML_ADMIN_TOKEN); the alert rules
    are evaluated every monitoring.interval_s, and rollouts decided every
    rollout.interval_s, each by a process of its own."""
    import os

    from cd4ml.cli.rollout import start_controller
    from cd4ml.config import load_config
    from cd4ml.rollout.admin_api import admin_token_from_env
    from cd4ml.serving.server import check_port
    from cd4ml.serving.server import serve as _serve

    admin_token_from_env()  # an empty CD4ML_ADMIN_TOKEN: refused now, in one line
    cfg, _ = load_config(project.resolve(), set_)
    check_port(host or cfg.serving.host, port or cfg.serving.port)  # before any helper
    url = _server_url(host or cfg.serving.host, port or cfg.serving.port)
    # each worker's factory reads where the project is (uvicorn passes no args)
    os.environ[_UI_ENV] = json.dumps({"project_dir": str(project.resolve()),
                                      "overrides": list(set_ or []), "ui": ui})
    watcher = _alert_watcher(project, set_, cfg, url)
    controller = start_controller(project, set_, port, host)
    if json_:
        def ready(res: Any) -> dict[str, Any] | None:
            if res.status_code != 200:  # loading the model, or draining
                return None
            served = res.json()
            return {"command": "serve", "url": url, "model": served["model"],
                    "version": served["version"],
                    "dashboard": f"{url}{UI_PREFIX}/" if ui else None,
                    "admin": f"{url}/admin", "workers": workers or cfg.serving.workers,
                    "pid": os.getpid()}

        _print_when_ready(f"{url}/ready", ready)
    try:
        _serve(project, overrides=set_, port=port, host=host, workers=workers,
               factory="cd4ml.cli.serving:serve_app")
    finally:
        for helper in (watcher, controller):
            if helper is not None and helper.poll() is None:
                helper.terminate()
                try:
                    helper.wait(timeout=10)
                except Exception:  # noqa: BLE001 - never outlive the server
                    helper.kill()


def _server_url(host: str, port: int) -> str:
    """``http://HOST:PORT``, where this machine reaches a server listening on ``host``
    (a wildcard address on loopback).

    >>> _server_url("0.0.0.0", 5005), _server_url("10.0.0.7", 80)
    ('http://127.0.0.1:5005', 'http://10.0.0.7:80')
    """
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def _print_when_ready(probe: str, ready: Callable[[Any], dict[str, Any] | None]) -> None:
    """From a daemon thread, GET ``probe`` every 0.2 s until ``ready(response)`` gives a
    document, and print it as the command's one JSON document (a long-running command's
    ``--json``: what started, once it answers; its logs stay on stderr)."""
    import threading
    import time

    import httpx

    def wait() -> None:
        while True:
            try:
                doc = ready(httpx.get(probe, timeout=5))
            except httpx.HTTPError:  # not listening yet
                doc = None
            if doc is not None:
                emit_json(doc)
                return
            time.sleep(0.2)

    threading.Thread(target=wait, name="cd4ml-ready", daemon=True).start()


def _alert_watcher(project: Path, set_: list[str] | None, cfg: Any, url: str) -> Any:
    """``cd4ml monitor --every monitoring.interval_s`` beside the server at ``url`` (its
    own process: the workers never wait on an evaluation), scraping the server's
    /metrics; None when the interval is 0 or the project (``cfg``) has no monitoring to
    do. Its output goes to stderr, as the server's logs."""
    import os
    import subprocess

    if not cfg.monitoring.interval_s or not cfg.monitoring.alerts.rules:
        return None
    args = [sys.executable, "-m", "cd4ml.cli", "monitor", "-p", str(project.resolve()),
            "--every", str(cfg.monitoring.interval_s), "--metrics-url", f"{url}/metrics",
            "--parent", str(os.getpid())]
    for s_ in set_ or []:
        args += ["--set", s_]
    return subprocess.Popen(args, stdout=STDERR_FD)


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


def ui(project: Project = Path("."), set_: Sets = None,
       port: Annotated[int | None, typer.Option("--port", help="default 5050")] = None,
       host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
       metrics_url: Annotated[str | None, typer.Option(
           "--metrics-url", help="a running server's /metrics, for its software "
                                 "metrics (http://HOST:PORT/metrics)")] = None,
       json_: Annotated[bool, typer.Option(
           "--json", help="once it answers, one JSON document on stdout: url, project, "
                          "metrics_url, pid (logs: stderr)")] = False) -> None:
    """The dashboard alone: runs, models, audit trail and monitoring of served models."""
    import os

    from cd4ml.dashboard.run import DEFAULT_PORT, run_ui

    port = port or DEFAULT_PORT
    if json_:
        url = f"{_server_url(host, port)}/"
        doc = {"command": "ui", "url": url, "project": str(project.resolve()),
               "metrics_url": metrics_url, "pid": os.getpid()}
        _print_when_ready(url, lambda res: doc)  # any answer: it is listening
    run_ui(project, overrides=set_, host=host, port=port, metrics_url=metrics_url)


def predict(
        input_: Annotated[Path, typer.Option(
            "--input", "-i", help="rows to score: .csv, .csv.gz or .parquet")],
        output: Annotated[Path, typer.Option("--output", "-o", help="a .parquet file")],
        model: Annotated[str | None, typer.Option(
            "--model", help="NAME@alias or NAME/VERSION [default: models.name@serving.alias]",
            show_default=False)] = None,
        project: Project = Path("."), set_: Sets = None,
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
    cfg, _ = load_config(root, set_)
    if model is None:
        model = f"{cfg.models.name}@{cfg.serving.alias}"
    m = load_model(model, project_dir=root, forecast_table=cfg.serving.forecast_table,
                   overrides=set_)
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
        emit_json(summary)
        return
    out.print(f"scored {summary['rows']:,} rows in {summary['seconds']:.1f} s "
              f"({summary['rows_per_s'] or 0:,.0f} rows/s) with {m.name}@v{m.version} "
              f"-> {output}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``ui`` and ``predict`` to the ``cd4ml`` app."""
    app.command("serve")(serve)
    app.command("ui")(ui)
    app.command("predict")(predict)
