"""``cd4ml models`` and ``cd4ml promote``: the registry's versions and their aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cd4ml.cli.common import Json, Project, emit_json, fmt, out, project_stores

__all__ = ["register"]


def models(project: Project = Path("."), json_: Json = False) -> None:
    """Registered model versions with their gate reports and aliases."""
    with project_stores(project) as (_, stores):
        rows = stores.metadata.list_versions()
    if json_:
        emit_json(rows)
        return
    t = Table("model", "version", "aliases", "kind", "recipe", "wmae", "gate", "run", "created")
    for v in rows:
        gate = v.get("gate") or {}
        t.add_row(v["model_name"], str(v["version"]), ", ".join(v.get("aliases") or []),
                  v["kind"], v["model_type"], fmt((v.get("metrics") or {}).get("wmae", "-")),
                  "pass" if gate.get("passed") else "fail (baseline)" if v["kind"] == "baseline"
                  else "fail", str(v.get("run_id") or "-"), str(v["created_at"])[:19])
    out.print(t)


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

    from cd4ml.rollout.manage import on_alias_moved

    with project_stores(project) as (_, stores):
        md = stores.metadata
        current = expect if expect is not None else md.alias_version(model, alias)
        previous = md.set_alias(model, alias, version, expected=current,
                                actor=getpass.getuser(), reason=reason)
        started = on_alias_moved(stores, model, alias, version, reason=reason)
    was = f" (was v{previous})" if previous is not None else ""
    out.print(f"{model}@{alias} → v{version}{was}")
    for line in started:
        out.print(f"  deployment {line}")


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``promote`` to the ``cd4ml`` app."""
    app.command("models")(models)
    app.command("promote")(promote)
