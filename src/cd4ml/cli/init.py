"""``cd4ml init DIR --data FILE``: a working project from a data file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cd4ml.cli.common import Json, emit_json, out

__all__ = ["register"]


def _columns_error(file: Path) -> None:
    """No --target: the columns to choose from; exit 2 (a usage error) when nobody can be
    asked."""
    from cd4ml.scaffold import read_data

    cols = ", ".join(map(str, read_data(file).columns))
    sys.stderr.write(f"error: --target is required: which column of {file.name} should "
                     f"the model predict? columns: {cols}\n")
    raise typer.Exit(2)


def init(data: Annotated[Path, typer.Option(
             "--data", help="the data file: .csv, .csv.zip, .csv.gz or .parquet")],
         directory: Annotated[Path, typer.Argument(
             metavar="DIR", help="the project folder to create (default: here)")] = Path("."),
         target: Annotated[str | None, typer.Option(
             "--target", help="the column to predict")] = None,
         task: Annotated[str, typer.Option(
             "--task", help="auto | forecast | classification | regression")] = "auto",
         time: Annotated[str | None, typer.Option(
             "--time", help="the date column [default: the first date column]",
             show_default=False)] = None,
         series: Annotated[str | None, typer.Option(
             "--series", help="forecast: the series keys, comma-separated [default: the "
                              "fewest columns that identify a row with the time]",
             show_default=False)] = None,
         id_: Annotated[str | None, typer.Option(
             "--id", help="a row id column [default: an integer or text column unique "
                          "per row]", show_default=False)] = None,
         json_: Json = False) -> None:
    """Write cd4ml.yaml and schema/ for a data file: task, split, models, gate, decided
    from the data (and said why), then `cd4ml run` and `cd4ml serve` work as they are."""
    from cd4ml.scaffold import plan_project, read_data, write_project

    if target is None:
        if json_ or not sys.stdin.isatty():
            _columns_error(data)
        cols = [str(c) for c in read_data(data).columns]
        target = typer.prompt(f"columns: {', '.join(cols)}\nwhich one should the model "
                              f"predict?")
    keys = [s.strip() for s in series.split(",") if s.strip()] if series else None
    plan = plan_project(directory, data, target=target, task=task, time=time, series=keys,
                        id_column=id_)
    written = write_project(plan)
    if json_:
        emit_json(plan.to_dict())
        return
    out.print(f"[bold]{plan.task}[/] project for [bold]{plan.target}[/] in {plan.root}",
              markup=True)
    for d in plan.decisions:
        choice = d.choice if isinstance(d.choice, str) else json.dumps(d.choice, default=str)
        out.print(f"  {d.key}: {choice} — {d.why}", markup=False, soft_wrap=True)
    for p in written:
        out.print(f"wrote {p}", markup=False, soft_wrap=True)
    out.print("next:", markup=False)
    for cmd in plan.next_commands():
        out.print(f"  {cmd}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
