"""``cd4ml runs`` and ``cd4ml runs diff``: the tracked runs, and what changed between two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cd4ml.cli.common import (HELP_MARKUP, Col, Json, Project, Sets, emit_json, fmt, minute,
                              out, print_table, project_stores)

__all__ = ["register", "runs_app"]

runs_app = typer.Typer(help="Tracked runs: list them, or diff two.", invoke_without_command=True,
                       rich_markup_mode=HELP_MARKUP)


#: ``runs diff``'s project: its own ``-p``, else the one given to ``runs``
DiffProject = Annotated[Path | None, typer.Option(
    "-p", "--project", help="project folder (cd4ml.yaml) [default: runs -p, else .]",
    show_default=False)]


@runs_app.callback()
def runs(ctx: typer.Context, project: Project = Path("."), set_: Sets = None,
         json_: Json = False,
         limit: Annotated[int, typer.Option(help="newest N runs")] = 20) -> None:
    """Tracked runs: params, metrics, data snapshot, code version, duration."""
    if ctx.invoked_subcommand is not None:  # runs -p DIR --set … diff A B: for diff
        ctx.obj = {"project": project, "set": list(set_ or []), "json": json_}
        return
    with project_stores(project, set_) as (cfg, stores):
        rows = stores.metadata.list_runs(limit)
        children = stores.metadata.child_runs([r["id"] for r in rows])
    if json_:
        emit_json([{**r, "trials": children[r["id"]]} for r in rows])
        return
    if not rows:
        out.print("no runs yet: cd4ml run trains, gates and registers")
        return
    metric = cfg.evaluation.metric  # the loaded config holds the task's default if unset
    table = []
    for r in rows:
        table.append(_run_row(r, f"holdout.selected.{metric}"))
        table += [_trial_row(c, f"validation.{metric}") for c in children[r["id"]]]
    print_table([Col("run", whole=True), Col("status", whole=True),
                 Col("started", whole=True), Col("took", whole=True), Col("selected"),
                 Col(metric, whole=True), Col("git", whole=True), Col("details")],
                table, optional=2)


def _run_row(r: dict[str, Any], key: str) -> list[str]:
    """A run: id, status, start, duration, the candidate selected, its holdout metric,
    the code's commit (``*``: uncommitted changes) and the data's snapshots."""
    dur = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
    git = (r.get("git_commit") or "-")[:7] + ("*" if r.get("git_dirty") else "")
    snaps = ", ".join(f"{k}:{v[:8]}" for k, v in (r.get("snapshots") or {}).items())
    return [r["id"], r["status"], minute(r["started_at"]), dur,
            str((r.get("summary") or {}).get("selected") or "-"),
            fmt((r.get("metrics") or {}).get(key, "-")), git, snaps]


def _trial_row(c: dict[str, Any], key: str) -> list[str]:
    """A search's trial, indented under its run: candidate, method and trial number, its
    validation metric, its params (or why it failed)."""
    p, summ = c.get("params") or {}, c.get("summary") or {}
    what = f"{p.get('candidate', '?')} {p.get('method', '')} #{p.get('trial', '?')}"
    params = ", ".join(f"{k}={fmt(v)}" for k, v in (p.get("params") or {}).items())
    dur = "cached" if summ.get("cached") else f"{summ.get('seconds', c['duration_s']):.1f}s"
    if c["status"] == "succeeded":
        metric, details = fmt((c.get("metrics") or {}).get(key, "-")), params
    else:
        metric, details = "-", c.get("error") or "failed"
    return [f"└ {c['id']}", c["status"], "", dur, what, metric, "", details]


@runs_app.command("diff")
def diff(ctx: typer.Context, a: str, b: str, project: DiffProject = None, set_: Sets = None,
         json_: Json = False) -> None:
    """What changed between runs A and B: params and metrics."""
    given = ctx.obj if isinstance(ctx.obj, dict) else {}  # by runs, before "diff"
    project = project or given.get("project") or Path(".")
    sets = [*given.get("set", []), *(set_ or [])]
    json_ = json_ or given.get("json", False)
    with project_stores(project, sets) as (_, stores):
        ra, rb = stores.metadata.get_run(a), stores.metadata.get_run(b)
    from cd4ml.store.params import flat_diff  # cd4ml.store imports SQLAlchemy

    params = flat_diff(ra.get("params") or {}, rb.get("params") or {})
    ma, mb = ra.get("metrics") or {}, rb.get("metrics") or {}
    metrics = {k: (ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))
               if ma.get(k) != mb.get(k)}
    if json_:
        emit_json({"a": ra["id"], "b": rb["id"], "params": params,
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
        t.add_row(k, fmt(x), fmt(y), ch)
    out.print(t if metrics else "metrics: no change")


def register(app: typer.Typer) -> None:
    """Add ``runs`` and ``runs diff`` to the ``cd4ml`` app."""
    app.add_typer(runs_app, name="runs")
