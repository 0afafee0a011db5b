"""``cd4ml monitor``: a served version's current data against its reference profile.

The log side (a window of logged predictions: input and prediction drift, quality on
feedback and estimated without it, skew) is ``monitor_log``; this module resolves the
version and its reference, and holds the source-data side:

``--data`` snapshots every source anew (the same content-addressed snapshot a run takes,
so it is kept and traceable) and compares what is new since training with the reference
the version was registered with:

- a forecast's covariates and static columns on the panel rows after the training end
  (its covariates reach the model only from the history bundled at training, so new
  source data is where their change shows);
- a tabular model's inputs on the rows of the new snapshot that the training snapshot
  did not hold (by ``data.id``, else by the whole row).

A version without a reference, a snapshot with no new rows, or a source that lost a
column each give a state and a message in the report, not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cd4ml.errors import Cd4mlError

__all__ = ["monitor"]


def _snapshot_all(cfg: Any, root: Path, stores: Any) -> tuple[dict[str, pd.DataFrame],
                                                              dict[str, str]]:
    """Each source read and stored as a snapshot now (the run's own snapshot step)."""
    from cd4ml.data import read_snapshot_bytes
    from cd4ml.pipeline.context import RunContext
    from cd4ml.pipeline.sources import schema_path
    from cd4ml.pipeline.steps_data import snapshot
    from cd4ml.store.fingerprint import file_fingerprint

    ctx = RunContext(cfg=cfg, project_dir=root, metadata=stores.metadata,
                     artifacts=stores.artifacts)
    frames, ids = {}, {}
    for name, src in cfg.data.sources.items():
        fp = file_fingerprint(ctx.path(src.path), root / ".cd4ml" / "hashes.json")
        out = snapshot(ctx, {"file": fp}, {"source": name, "config": src.model_dump(mode="json"),
                                           "schema_path": schema_path(cfg, name)})
        frames[name] = read_snapshot_bytes(stores.artifacts.get_bytes(out["data"]))
        ids[name] = out["snapshot"]
    return frames, ids


def _training_frame(stores: Any, version: dict[str, Any], source: str) -> pd.DataFrame | None:
    from cd4ml.data import read_snapshot_bytes

    snap = (version.get("lineage") or {}).get("snapshots", {}).get(source)
    if snap is None:
        return None
    row = stores.metadata.get_snapshot(snap)
    return read_snapshot_bytes(stores.artifacts.get_bytes(row["data_digest"]))


def _new_rows(cfg: Any, stores: Any, version: dict[str, Any], frames: dict[str, pd.DataFrame],
              columns: list[str]) -> tuple[pd.DataFrame, str]:
    """The rows (reference columns present) that are new since training, and how chosen."""
    data = cfg.data
    if cfg.task == "forecast":
        from cd4ml.features import build_panel

        pnl = build_panel(frames, data, cfg.features)
        end = (version.get("lineage") or {}).get("trained_on", {}).get("end")
        keep = pd.to_numeric(pnl[data.target], errors="coerce").notna()
        if end is not None:
            keep &= pnl[data.time] > pd.Timestamp(end)
        how = f"panel rows after the training end {end}" if end else "every panel row"
        return pnl.loc[keep.to_numpy(), [c for c in columns if c in pnl.columns]], how
    from cd4ml.features.panel import join_sources

    df = join_sources(frames[data.main], frames, data, None)
    old = _training_frame(stores, version, data.main)
    if old is None:
        return df[[c for c in columns if c in df.columns]], "every row (no training snapshot)"
    if data.id and data.id in df.columns and data.id in old.columns:
        new = ~df[data.id].isin(old[data.id])
        how = f"rows whose {data.id} the training snapshot did not hold"
    else:
        common = [c for c in old.columns if c in df.columns]
        seen = set(pd.util.hash_pandas_object(old[common], index=False).tolist())
        new = ~pd.util.hash_pandas_object(df[common], index=False).isin(seen)
        how = "rows the training snapshot did not hold"
    return df.loc[new.to_numpy(), [c for c in columns if c in df.columns]], how


def monitor(project_dir: str | Path = ".", overrides: list[str] | None = None, *,
            model: str | None = None, version: str | None = None,
            data: bool = False, log: bool = False, since: float | None = None,
            until: float | None = None, last: int | None = None,
            by: str = "time") -> dict[str, Any]:
    """The monitoring report of one version (default: the serving alias's) as a dict:
    ``data`` compares new source snapshots, ``log`` a window of the prediction log
    (``since``/``until`` epoch seconds, ``last`` rows; ``cd4ml.pipeline.monitor_log``),
    by log time (``by="time"``) or by event time (``by="event"``: a forecast's date, a
    tabular model's ``monitoring.event_time`` input, else the request's
    ``X-Event-Time``; rows without one are left out and counted)."""
    from cd4ml.monitoring import DriftSettings, compare, reference_of
    from cd4ml.pipeline.run import open_project

    cfg, _, stores, root = open_project(project_dir, overrides)
    name = model or cfg.models.name
    which = version or cfg.serving.alias
    settings = DriftSettings.from_config(cfg.monitoring.drift)
    with stores:
        row = stores.metadata.resolve(name, which)
        found = reference_of(row, stores.artifacts)
        doc: dict[str, Any] = {
            "model": name, "version": row["version"], "asked": which,
            "reference": {"state": found.state, "message": found.message}}
        if found.reference is None:
            return doc
        ref = found.reference
        doc["reference"].update(rows=ref.rows, columns=list(ref.features),
                                created=ref.meta.get("created"))
        if data:
            frames, ids = _snapshot_all(cfg, root, stores)
            section: dict[str, Any] = {
                "snapshots": ids,
                "training_snapshots": (row.get("lineage") or {}).get("snapshots", {})}
            try:
                current, how = _new_rows(cfg, stores, row, frames, list(ref.features))
            except Cd4mlError as exc:  # a source that lost a join key, say
                section.update(state="not comparable", message=str(exc))
            else:
                report = compare(ref, current, settings=settings)
                section.update(state="drifted" if report.drifted_columns else "ok",
                               rows=len(current), rows_chosen=how, drift=report.to_dict())
                if len(current) == 0:
                    section.update(state="insufficient", message=f"no new rows ({how})")
            doc["data"] = section
        if log:
            from cd4ml.pipeline.monitor_log import log_section

            doc["log"] = log_section(cfg, root, stores, row, ref, settings, since=since,
                                     until=until, last=last, by=by)
        return doc
