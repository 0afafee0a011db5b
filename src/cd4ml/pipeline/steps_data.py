"""Data stages: snapshot each source, validate it, build the panel, features and split."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cd4ml.config import SourceConfig
from cd4ml.data import (infer_schema, load_schema, make_snapshot, read_snapshot_bytes,
                        read_source, save_schema, time_windows, validate)
from cd4ml.errors import NotFoundError, ValidationFailed
from cd4ml.features import build_panel, compute_features, spec_from_config

__all__ = ["snapshot", "check", "validated_frames", "panel", "features", "split"]


def snapshot(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Read a source, store it as a content-addressed Parquet snapshot with its profile.

    On the first run of a project the source's schema is inferred into
    ``<schema_dir>/<source>.yaml`` for a person to read and edit.
    """
    name = params["source"]
    src = SourceConfig(**params["config"])
    # the id covers the bytes and how they are read (e.g. which columns are dates)
    fingerprint = hashlib.sha256(json.dumps([inputs["file"], params["config"]],
                                            sort_keys=True).encode()).hexdigest()
    try:
        existing = ctx.metadata.get_snapshot(fingerprint)
    except NotFoundError:
        existing = None
    if existing is not None and ctx.artifacts.exists(existing["data_digest"]):
        out = {"snapshot": fingerprint, "data": existing["data_digest"],
               "profile": existing["profile_digest"], "rows": existing["rows"]}
    else:
        df = read_source(name, src, ctx.project_dir)
        snap = make_snapshot(name, df, fingerprint=fingerprint)
        data = ctx.artifacts.put_bytes(snap.data)
        prof = ctx.artifacts.put_json(snap.profile)
        ctx.metadata.put_snapshot(snapshot_id=snap.id, source=name, path=str(ctx.path(src.path)),
                                  rows=snap.rows, columns=snap.columns, data_digest=data,
                                  profile_digest=prof)
        out = {"snapshot": snap.id, "data": data, "profile": prof, "rows": snap.rows}
    schema_path = ctx.path(params["schema_path"])
    if not schema_path.exists():
        df = read_snapshot_bytes(ctx.artifacts.get_bytes(out["data"]))
        keys = params.get("keys")
        save_schema(infer_schema(df, name=name, keys=keys), schema_path)
    return out


def check(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Validate a snapshot against its schema file; stop the run on errors."""
    data = inputs[f"snapshot:{params['source']}.data"]
    df = read_snapshot_bytes(ctx.artifacts.get_bytes(data))
    schema = load_schema(ctx.path(params["schema_path"]))
    report = validate(df, schema)
    digest = ctx.artifacts.put_json(report.to_dict())
    if not report.ok:
        raise ValidationFailed(f"{report.summary()} (schema: {params['schema_path']})",
                               report=report)
    ctx.memo[data] = df
    return {"data": data, "report": digest, "summary": report.summary(),
            "warnings": len(report.warnings)}


def validated_frames(ctx: Any, inputs: dict[str, Any], data: Any) -> dict[str, Any]:
    """Each source's validated snapshot as a frame: from the run's memo (``check`` put it
    there), else read from the artifact store."""
    frames = {}
    for name in data.sources:
        digest = inputs[f"validate:{name}.data"]
        df = ctx.memo.get(digest)
        frames[name] = df if df is not None else read_snapshot_bytes(
            ctx.artifacts.get_bytes(digest))
    return frames


def panel(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Join the validated snapshots into the dense panel of every series and date."""
    from cd4ml.config import DataConfig, FeaturesConfig

    data, feats = DataConfig(**params["data"]), FeaturesConfig(**params["features"])
    frames = validated_frames(ctx, inputs, data)
    pnl = build_panel(frames, data, feats)
    digest = ctx.put_frame(pnl)
    n_series = int(pnl[data.series].drop_duplicates().shape[0])
    return {"panel": digest, "history_end": pnl.attrs["history_end"], "rows": len(pnl),
            "series": n_series}


def _panel(ctx: Any, inputs: dict[str, Any]) -> Any:
    pnl = ctx.frame(inputs["panel.panel"])
    pnl.attrs["history_end"] = inputs["panel.history_end"]
    return pnl


def features(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fix the feature spec and compute the features of every panel row."""
    from cd4ml.config import DataConfig, FeaturesConfig

    data, feats = DataConfig(**params["data"]), FeaturesConfig(**params["features"])
    pnl = _panel(ctx, inputs)
    spec = spec_from_config(data, feats, pnl)
    X = compute_features(pnl, spec)
    return {"features": ctx.put_frame(X), "spec": spec.to_dict(),
            "names": spec.feature_names}


def split(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Validation and holdout windows: the last periods with a known target. A training
    window too short for the features is refused here, before any fit
    (:func:`cd4ml.features.history.check_history`)."""
    from cd4ml.config import FeaturesConfig
    from cd4ml.features.history import check_history

    pnl = _panel(ctx, inputs)
    known = pnl.loc[pnl[params["target"]].notna(), params["time"]]
    f = params["frequency_days"]
    w = time_windows(known, validation_periods=params["validation_periods"],
                     holdout_periods=params["holdout_periods"], frequency_days=f)
    # periods from the first known target to the training window's end, as the
    # features count them (the panel is a dense grid of every period)
    periods = (w.train_end - w.train_start).days // f + 1
    check_history(periods, FeaturesConfig(**params["features"]),
                  validation_periods=params["validation_periods"],
                  holdout_periods=params["holdout_periods"], frequency_days=f,
                  span=f" ({w.train_start.date()} to {w.train_end.date()})")
    return {"windows": w.to_dict()}
