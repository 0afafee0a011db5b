"""Load a registered model version, verified against the registry's hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cd4ml.errors import ConfigError, ModelError, NotFoundError
from cd4ml.registry.bundle import read_manifest
from cd4ml.registry.servable import ServableModel
from cd4ml.registry.tabular import TabularServable
from cd4ml.tasks import resolve, task_of

__all__ = ["parse_uri", "load_version", "load_model", "servable_class"]

Servable = ServableModel | TabularServable


def parse_uri(uri: str) -> tuple[str, str]:
    """``NAME@alias`` or ``NAME/VERSION`` -> (name, alias or version).

    >>> parse_uri("walmart-weekly-sales@production"), parse_uri("m/3")
    (('walmart-weekly-sales', 'production'), ('m', '3'))
    """
    for sep in ("@", "/"):
        if sep in uri:
            name, _, ref = uri.partition(sep)
            if name and ref:
                return name, ref
    raise NotFoundError(f"model reference {uri!r}: expected NAME@alias or NAME/VERSION")


def servable_class(manifest: dict[str, Any]) -> type[Servable]:
    """The class serving a bundle: the task table's entry for the manifest's task (a
    bundle without one is a forecast)."""
    try:
        task = task_of(manifest.get("task", "forecast"))
    except ConfigError as exc:
        raise ModelError(f"bundle of {manifest.get('model_name')!r}: {exc}") from None
    return resolve(task.servable)  # type: ignore[no-any-return]


def load_version(metadata: Any, artifacts: Any, name: str, ref: str | int, *,
                 forecast_table: bool = True, compiled: bool = True) -> Servable:
    """Resolve ``ref`` (alias or version), verify every file's hash, build the servable
    its task names.

    Forecast: with ``forecast_table`` (and a bundle that has one), answers come from the
    table the model computed at registration, once a sample of it matches the live model;
    otherwise the model runs on every request. Tabular: with ``compiled`` (and a bundle
    that has one), a compiled predictor answers once it matched the plain one.
    """
    row = metadata.resolve(name, int(ref) if str(ref).isdigit() else ref)
    manifest = read_manifest(artifacts, row["digest"])
    return servable_class(manifest).from_bundle(
        artifacts, manifest, name=name, version=row["version"], digest=row["digest"],
        forecast_table=forecast_table, compiled=compiled)


def load_model(uri: str, *, project_dir: str | Path = ".", forecast_table: bool = True,
               overrides: list[str] | None = None) -> Servable:
    """The version ``uri`` names (``NAME@alias`` or ``NAME/VERSION``) from the stores of
    the project's config with ``overrides`` (``key.path=value``, as ``--set``)."""
    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    root = Path(project_dir).resolve()
    cfg, _ = load_config(root, overrides)
    name, ref = parse_uri(uri)
    with open_stores(cfg.store, root) as stores:
        return load_version(stores.metadata, stores.artifacts, name, ref,
                            forecast_table=forecast_table)
