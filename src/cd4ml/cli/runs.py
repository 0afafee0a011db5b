"""``cd4ml runs`` and ``cd4ml runs diff``: the tracked runs, and what changed between two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cd4ml.cli.common import Json, Project, emit_json, fmt, out, project_stores

__all__ = ["register", "runs_app"]

runs_app = typer.Typer(help="Tracked runs: list them, or diff two.", invoke_without_command=True)


@runs_app.callback()
def runs(ctx: typer.Context, project: Project = Path("."), json_: Json = False,
         limit: Annotated[int, typer.Option(help="newest N runs")] = 20) -> None:
    """Tracked runs: params, metrics, data snapshot, code version, duration."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = project
        return
    with project_stores(project) as (cfg, stores):
        rows = stores.metadata.list_runs(limit)
        children = stores.metadata.child_runs([r["id"] for r in rows])
    if json_:
        emit_json([{**r, "trials": children[r["id"]]} for r in rows])
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
                  fmt((r.get("metrics") or {}).get(key, "-")))
        for c in children[r["id"]]:
            t.add_row(*_trial_row(c, f"validation.{cfg.evaluation.metric}"))
    out.print(t)


def _trial_row(c: dict[str, Any], key: str) -> list[str]:
    """A search's trial, indented under its run: candidate and trial number, its params,
    its validation metric (or why it failed)."""
    p, summ = c.get("params") or {}, c.get("summary") or {}
    what = f"{p.get('candidate', '?')} {p.get('method', '')} #{p.get('trial', '?')}"
    params = ", ".join(f"{k}={fmt(v)}" for k, v in (p.get("params") or {}).items())
    dur = "cached" if summ.get("cached") else f"{summ.get('seconds', c['duration_s']):.1f}s"
    metric = fmt((c.get("metrics") or {}).get(key, "-")) if c["status"] == "succeeded" \
        else (c.get("error") or "failed")[:60]
    return [f"└ {c['id']}", c["status"], "", dur, "", what, params, metric]


@runs_app.command("diff")
def diff(ctx: typer.Context, a: str, b: str, json_: Json = False) -> None:
    """What changed between runs A and B: params and metrics."""
    project = ctx.obj or Path(".")
    with project_stores(project) as (_, stores):
        ra, rb = stores.metadata.get_run(a), stores.metadata.get_run(b)
    params = _flat_diff(ra.get("params") or {}, rb.get("params") or {})
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


def register(app: typer.Typer) -> None:
    """Add ``runs`` and ``runs diff`` to the ``cd4ml`` app."""
    app.add_typer(runs_app, name="runs")
