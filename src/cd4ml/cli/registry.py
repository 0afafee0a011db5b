"""``cd4ml models`` and ``cd4ml promote``: the registry's versions and their aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cd4ml.cli.common import (Col, Json, Project, Sets, emit_json, fmt, minute, out,
                              print_table, project_stores)

__all__ = ["register"]


def models(project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Registered model versions with their gate reports and aliases."""
    with project_stores(project, set_) as (cfg, stores):
        rows = stores.metadata.list_versions()
    if json_:
        emit_json(rows)
        return
    if not rows:
        out.print("no model version registered yet: cd4ml run trains, gates and registers")
        return
    metric = cfg.evaluation.metric  # the loaded config holds the task's default if unset
    by_model: dict[str, list[dict[str, Any]]] = {}
    for v in rows:
        by_model.setdefault(v["model_name"], []).append(v)
    for i, (name, versions) in enumerate(by_model.items()):
        if i:
            out.print()
        out.print(name, style="bold", markup=False, soft_wrap=True)  # whole, however long
        print_table([Col("version", whole=True), Col("aliases", whole=True), Col("recipe"),
                     Col("gate", whole=True), Col(metric, whole=True), Col("run", whole=True),
                     Col("created", whole=True)],
                    [_version_row(v, metric) for v in versions], optional=1)


def _version_row(v: dict[str, Any], metric: str) -> list[str]:
    """A version: number, aliases (one a line), recipe, gate, the project's metric on the
    holdout, the run that made it and when."""
    return [str(v["version"]), "\n".join(v.get("aliases") or []), v["model_type"], _gate(v),
            fmt((v.get("metrics") or {}).get(metric, "-")), v.get("run_id") or "-",
            minute(v["created_at"])]


def _gate(version: dict[str, Any]) -> str:
    """``pass``, ``fail``, or ``baseline`` for a baseline registered because nothing passed
    (as the dashboard says it)."""
    if (version.get("gate") or {}).get("passed"):
        return "pass"
    return "baseline" if version["kind"] == "baseline" else "fail"


def promote(model: str, version: int,
            alias: Annotated[str, typer.Option("--alias", help="alias to move")] = "production",
            reason: Annotated[str, typer.Option("--reason")] = "manual promotion",
            expect: Annotated[int | None, typer.Option(
                "--expect", min=1, help="move only if the alias holds this version now "
                                        "(default: the version it holds when read)")] = None,
            project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Move an alias to a model version (compare-and-set, audited either way).

    The move happens only if the alias still holds the version read (or --expect); if
    anyone moved it in between, nothing changes and the command fails naming both.
    """
    import getpass

    from cd4ml.rollout.manage import on_alias_moved

    with project_stores(project, set_) as (_, stores):
        md = stores.metadata
        current = expect if expect is not None else md.alias_version(model, alias)
        previous = md.set_alias(model, alias, version, expected=current,
                                actor=getpass.getuser(), reason=reason)
        started = on_alias_moved(stores, model, alias, version, reason=reason)
    if json_:
        emit_json({"model": model, "alias": alias, "version": version, "previous": previous,
                   "deployments": started})
        return
    was = f" (was v{previous})" if previous is not None else ""
    out.print(f"{model}@{alias} → v{version}{was}")
    for line in started:
        out.print(f"  deployment {line}")


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``promote`` to the ``cd4ml`` app."""
    app.command("models")(models)
    app.command("promote")(promote)
