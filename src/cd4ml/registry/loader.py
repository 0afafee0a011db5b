"""Load a registered model version, verified against the registry's hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cd4ml.errors import NotFoundError
from cd4ml.registry.bundle import load_forecasts, load_parts, read_manifest
from cd4ml.registry.servable import ServableModel

__all__ = ["parse_uri", "load_version", "load_model"]


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


def load_version(metadata: Any, artifacts: Any, name: str, ref: str | int, *,
                 forecast_table: bool = True) -> ServableModel:
    """Resolve ``ref`` (alias or version), verify every file's hash, build the servable.

    With ``forecast_table`` (and a bundle that has one), answers come from the table the
    model computed at registration, once a sample of it matches the live model;
    otherwise the model runs on every request.
    """
    row = metadata.resolve(name, int(ref) if str(ref).isdigit() else ref)
    manifest = read_manifest(artifacts, row["digest"])
    predictor, spec, history = load_parts(artifacts, manifest)
    table = load_forecasts(artifacts, manifest) if forecast_table else None
    model = ServableModel(predictor, spec, history, name=name, version=row["version"],
                          digest=row["digest"], manifest=manifest, forecasts=table)
    if not forecast_table:
        model.table_status = "off: the model answers every request"
    return model


def load_model(uri: str, *, project_dir: str | Path = ".",
               forecast_table: bool = True) -> ServableModel:
    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    root = Path(project_dir).resolve()
    cfg, _ = load_config(root)
    name, ref = parse_uri(uri)
    with open_stores(cfg.store, root) as stores:
        return load_version(stores.metadata, stores.artifacts, name, ref,
                            forecast_table=forecast_table)
