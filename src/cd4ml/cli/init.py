"""``cd4ml init DIR --data FILE``: a working project from a data file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cd4ml.cli.common import Json, emit_json, out

__all__ = ["register"]


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

    frame = None
    if target is None:  # the columns to choose from; the file is read once
        frame = read_data(data)
        cols = ", ".join(map(str, frame.columns))
        if json_ or not sys.stdin.isatty():  # nobody to ask: a usage error
            sys.stderr.write(f"error: --target is required: which column of {data.name} "
                             f"should the model predict? columns: {cols}\n")
            raise typer.Exit(2)
        target = typer.prompt(f"columns: {cols}\nwhich one should the model predict?")
    keys = [s.strip() for s in series.split(",") if s.strip()] if series else None
    plan = plan_project(directory, data, target=target, task=task, time=time, series=keys,
                        id_column=id_, frame=frame)
    written = write_project(plan)
    if json_:
        emit_json(plan.to_dict())
        return
    out.print(f"{plan.task} project for {plan.target} in {plan.root}", markup=False,
              soft_wrap=True)  # names from the data: never markup
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
