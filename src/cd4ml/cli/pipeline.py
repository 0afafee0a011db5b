"""``cd4ml run``, ``cd4ml status`` and ``cd4ml validate``: the pipeline and its data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cd4ml.cli.common import Json, Project, Sets, emit_json, err, fmt, out

__all__ = ["register"]


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
        emit_json(outcome.to_dict())
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
                t.add_row(k, fmt(v))
        out.print(t)
    if outcome.leakage:
        from cd4ml.evaluation import render_leakage

        for line in render_leakage(outcome.leakage):
            out.print(line, style="yellow", markup=False, soft_wrap=True)
    for name, error in outcome.failed.items():
        out.print(f"[red]failed[/] {name}: ", end="")
        out.print(error, markup=False, soft_wrap=True)
    for name, sr in outcome.searches.items():
        best = ", ".join(f"{k}={fmt(v)}" for k, v in sr["best_params"].items())
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


def status(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Which stages are stale, and why."""
    from cd4ml.pipeline.run import pipeline_status

    results = pipeline_status(project, set_)
    if json_:
        emit_json([{"stage": r.name, "status": r.status, "reason": r.reason}
                   for r in results])
        return
    t = Table("stage", "status", "why", box=None)
    for r in results:
        colour = {"cached": "green", "stale": "yellow"}.get(r.status, "dim")
        t.add_row(r.name, f"[{colour}]{'up to date' if r.status == 'cached' else r.status}[/]",
                  r.reason)
    out.print(t)


def validate(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Check every source against its schema file; a report per source."""
    from cd4ml.config import load_config
    from cd4ml.data import infer_schema, load_schema, read_source, save_schema
    from cd4ml.data import validate as validate_frame

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
        rep = validate_frame(df, load_schema(path))
        ok &= rep.ok
        reports[name] = rep
    if json_:
        emit_json({n: r.to_dict() for n, r in reports.items()})
    else:
        for rep in reports.values():
            out.print(rep.render() if not rep.ok or rep.warnings else rep.summary(),
                      markup=False)
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``status`` and ``validate`` to the ``cd4ml`` app."""
    app.command("run")(run)
    app.command("status")(status)
    app.command("validate")(validate)
