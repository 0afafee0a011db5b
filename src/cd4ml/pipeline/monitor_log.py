"""The log side of ``cd4ml monitor``: a window of a version's logged predictions against
its reference.

From the window's rows (``cd4ml.predlog.batches``, feedback joined within the window):

- **input drift** — the logged request fields against the training rows' summaries;
- **prediction drift** — the logged outputs (a binary classifier's positive-class
  probability, a multiclass one's per class, a regressor's or forecast's prediction)
  against the holdout's outputs;
- **quality** — where labels have arrived: the project's evaluation report (its metric
  overall, per slice and per protected group) on the labelled rows, and how much worse
  it is than on the holdout (``degradation``, relative; positive is worse);
- **estimated quality** (binary classifiers) — CBPE on every row of the window, labelled
  or not, calibrated on the holdout (``monitoring.estimate``), next to the realized
  figure when labels exist;
- **skew** (tabular) — the features the training path computes from the logged inputs
  against the vector the server used (``pipeline.skew``).

Every figure an alert rule can watch is also in ``metrics`` under the rule's name
(``drift.share``, ``prediction.score``, ``quality.roc_auc``, ``estimated.degradation``…).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["log_section", "judge_frame", "read_window", "output_map", "derive", "DERIVED"]

#: The per-row figures that cost a model call, computed once per logged row
#: (:func:`derive`; the monitor cache keeps them per block): the calibrated probability
#: of the positive class (CBPE), the reconstruction error (multivariate drift), and the
#: features the training path computes from the logged inputs (``training.<name>``, with
#: ``monitor.refused`` saying why where the training path refuses a block's inputs).
DERIVED = ("monitor.p", "monitor.recon", "monitor.refused")


def read_window(directory: Any, *, model: str, version: int, since: float | None,
                until: float | None, last: int | None = None, by: str = "time",
                cfg: Any = None) -> pd.DataFrame:
    """The window's rows as one frame.

    ``by="time"``: ``since <= ts < until`` (log time, epoch seconds), oldest first;
    ``last`` keeps the latest N. ``by="event"`` (needs the project's ``cfg``): the
    bounds are on each row's event time (``event_time.event_times``, in the column
    ``event_time``), rows without one left out and counted in
    ``df.attrs["without_event_time"]`` (of the version's whole log), the frame sorted by
    event time, then ``ts``, request and row; ``last`` keeps the latest N by event time.
    ``df.attrs["event_time"]`` says where the event times came from."""
    from cd4ml.pipeline.event_time import UTC_NS, event_source, event_times
    from cd4ml.predlog import batches

    if by not in ("time", "event"):
        raise ValueError(f"by == {by!r}, must be 'time' (log time) or 'event'")
    if by == "time":
        df = batches(directory, since=since, until=until, model=model,
                     version=version).read_all().to_pandas()
        order = ["ts", "request_id", "row"]
    else:
        if cfg is None:
            raise ValueError("read_window(by='event') needs cfg: the project's config says "
                             "where a row's event time comes from")
        what, col = event_source(cfg)
        if col == "event_ts" and (since is not None or until is not None):
            # the header's time is in the log's records: batches() filters on it
            df = batches(directory, model=model, version=version, event_since=since,
                         event_until=until).read_all().to_pandas()
            every = batches(directory, model=model, version=version, with_features=False,
                            with_inputs=False, feedback=False).read_all()
            missing = every.column("event_ts").null_count
            ev = df["event_ts"]
        else:
            df = batches(directory, model=model, version=version).read_all().to_pandas()
            ev = event_times(cfg, df)
            missing = int(ev.isna().sum())
            keep = ev.notna()
            if since is not None:
                keep &= ev >= pd.Timestamp(since, unit="s", tz="UTC")
            if until is not None:
                keep &= ev < pd.Timestamp(until, unit="s", tz="UTC")
            df, ev = df[keep.to_numpy()], ev[keep.to_numpy()]
        df = df.assign(event_time=ev.astype(UTC_NS))
        order = ["event_time", "ts", "request_id", "row"]
    if len(df):
        df = df.sort_values(order, kind="stable").reset_index(drop=True)
    if last is not None and len(df) > last:
        df = df.iloc[len(df) - last:].reset_index(drop=True)
    if by == "event":
        df.attrs.update(event_time=what, without_event_time=int(missing))
    return df


def output_map(manifest: dict[str, Any], reference_outputs: list[str]) -> dict[str, str]:
    """Reference output name -> logged output column."""
    classes = ((manifest.get("tabular") or {}).get("spec") or {}).get("classes")
    out: dict[str, str] = {}
    for name in reference_outputs:
        if name == "score" and classes and len(classes) == 2:
            out[name] = f"output.probability_{classes[1]}"
        elif name.startswith("proba."):
            out[name] = f"output.probability_{name.removeprefix('proba.')}"
        else:
            out[name] = f"output.{name}"
    return out


def _inputs(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c.startswith("input.")]
    return df[cols].rename(columns=lambda c: c.removeprefix("input."))


def _degradation(now: float | None, ref: float | None, higher: bool) -> float | None:
    if now is None or ref is None or not np.isfinite(now) or ref == 0:
        return None
    return float((ref - now) / abs(ref) if higher else (now - ref) / abs(ref))


def _quality(cfg: Any, manifest: dict[str, Any], df: pd.DataFrame) -> dict[str, Any]:
    """The evaluation report of the labelled rows (or why there is none)."""
    ev = cfg.evaluation
    lab = df[df["actual"].notna()] if "actual" in df.columns else df.iloc[:0]
    if len(lab) == 0:
        return {"state": "no labels", "rows": 0, "message": "no feedback in the window yet"}
    frame = _inputs(lab).reset_index(drop=True)
    y = lab["actual"].to_numpy(dtype=np.float64)
    if cfg.task == "classification":
        from cd4ml.evaluation.classification import classification_report

        classes = manifest["tabular"]["spec"]["classes"]
        idx = {float(c): i for i, c in enumerate(classes)}
        codes = np.array([idx.get(v, -1) for v in y])
        if (codes < 0).any() or len(np.unique(codes)) < 2:
            return {"state": "undefined", "rows": len(lab), "message": (
                "the labelled rows hold one class only: ranking metrics are undefined")}
        proba = np.column_stack([lab[f"output.probability_{c}"].to_numpy(np.float64)
                                 for c in classes])
        rep = classification_report(
            codes, proba, classes=classes, threshold=manifest.get("decision_threshold"),
            frame=frame, slices=[c for c in ev.slices if c in frame],
            protected=[c for c in ev.protected if c in frame],
            min_group_size=ev.min_group_size, bootstrap=0, metric=ev.metric)
    elif cfg.task == "regression":
        from cd4ml.evaluation.regression import regression_report

        rep = regression_report(y, lab["output.prediction"].to_numpy(np.float64), frame=frame,
                                slices=[c for c in ev.slices if c in frame],
                                protected=[c for c in ev.protected if c in frame],
                                min_group_size=ev.min_group_size, bootstrap=0,
                                metric=ev.metric)
    else:
        from cd4ml.evaluation import evaluate, evaluation_weights

        fr = pd.DataFrame({"_y": y, "_p": lab["output.prediction"].to_numpy(np.float64)})
        wcol = ev.weight_column
        feat = f"feature.{wcol}" if wcol else None
        if wcol and feat in lab.columns:
            flags = pd.DataFrame({wcol: lab[feat].fillna(0).to_numpy() > 0})
            fr["_w"] = evaluation_weights(flags, ev)
        rep = evaluate(fr, pred="_p", target="_y", weight="_w" if "_w" in fr else None)
        rep = rep.to_dict() if hasattr(rep, "to_dict") else rep
    return {"state": "ok", "rows": len(lab), "report": rep}


def log_section(cfg: Any, root: Any, stores: Any, row: dict[str, Any], ref: Any,
                settings: Any, *, since: float | None, until: float | None,
                last: int | None = None, by: str = "time") -> dict[str, Any]:
    """The log side of a monitoring report, and the metrics alert rules watch; ``by``:
    whether ``since``, ``until`` and ``last`` are of log time or event time
    (:func:`read_window`). The rows come from the monitor cache
    (:func:`~cd4ml.pipeline.monitor_cache.window_frame`: only blocks never read before
    are decoded)."""
    from cd4ml.pipeline.monitor_cache import window_frame

    manifest = stores.artifacts.get_json(row["digest"])
    memo: dict[str, Any] = {}
    df = window_frame(cfg, root, stores, row, ref, manifest, memo, since=since, until=until,
                      last=last, by=by, settings=settings)
    doc = judge_frame(cfg, stores, row, ref, settings, df, manifest, memo)
    doc["window"] = {"by": by, "since": since, "until": until, "last": last,
                     "first_ts": str(df["ts"].min()) if len(df) else None,
                     "last_ts": str(df["ts"].max()) if len(df) else None}
    if by == "event":
        n = df.attrs["without_event_time"]
        doc["window"].update(
            event_time=df.attrs["event_time"], without_event_time=n,
            first_event=str(df["event_time"].iloc[0]) if len(df) else None,
            last_event=str(df["event_time"].iloc[-1]) if len(df) else None,
            note=f"{n:,} rows without an event time (left out)" if n else None)
    return doc


def judge_frame(cfg: Any, stores: Any, row: dict[str, Any], ref: Any, settings: Any,
                df: pd.DataFrame, manifest: dict[str, Any],
                memo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every judgement of :func:`log_section` on rows already read (one window);
    ``memo`` keeps the version's transform and calibrator between windows."""
    memo = {} if memo is None else memo
    from cd4ml.monitoring import compare
    from cd4ml.monitoring.drift import compare_summaries
    from cd4ml.monitoring.summary import ColumnSummary
    from cd4ml.tasks import task_of

    doc: dict[str, Any] = {"rows": len(df), "requests": int(df["request_id"].nunique())
                           if len(df) else 0}
    metrics: dict[str, float | None] = {"rows": float(len(df))}
    if cfg.task == "forecast":  # its requests carry series keys and dates only
        doc["drift"] = {"columns": {}, "drifted": [], "share_drifted": None,
                        "drift_share": settings.drift_share, "dataset_drifted": False,
                        "state": "not applicable", "message": (
                            "a forecast's requests name series and dates; its covariates "
                            "come from the history bundled at training, so their drift "
                            "shows in new source data: cd4ml monitor --data")}
    else:
        drift = compare(ref, _inputs(df), settings=settings)
        doc["drift"] = drift.to_dict()
        metrics["drift.share"] = drift.share_drifted
        metrics["drift.columns"] = float(len(drift.drifted_columns))
        if settings.multivariate and "reconstruction" in ref.meta:
            from cd4ml.monitoring.multivariate import Reconstruction

            rec = memo.get("reconstruction") or memo.setdefault(
                "reconstruction", Reconstruction.from_dict(ref.meta["reconstruction"]))
            errors = (df["monitor.recon"].to_numpy(np.float64) if "monitor.recon" in df
                      else rec.errors(_inputs(df)))
            doc["multivariate"] = rec.judge_errors(errors, min_rows=settings.min_rows)
            metrics["drift.multivariate"] = doc["multivariate"]["error"]
    outs = output_map(manifest, list(ref.outputs))
    current = {name: ColumnSummary.of(df[col], "numeric") if col in df.columns
               else ColumnSummary.empty("numeric") for name, col in outs.items()}
    pred = compare_summaries(ref.outputs, current, settings)
    doc["prediction"] = pred.to_dict()
    main = next(iter(ref.outputs), None)
    metrics["prediction.score"] = (pred.columns[main].score if main else None)
    higher = task_of(cfg.task).higher_is_better(cfg.evaluation.metric)
    held = (row.get("metrics") or {}).get(cfg.evaluation.metric)
    quality = _quality(cfg, manifest, df)
    doc["quality"] = quality
    if quality["state"] == "ok":
        now = quality["report"]["overall"].get(cfg.evaluation.metric)
        metrics[f"quality.{cfg.evaluation.metric}"] = now
        metrics["quality.degradation"] = _degradation(now, held, higher)
        quality["reference"] = held
    if "calibrator" in ref.meta and "score" in outs and outs["score"] in df.columns and len(df):
        from cd4ml.monitoring.estimate import Calibrator, estimate_binary

        score = df[outs["score"]].to_numpy(np.float64)
        if "monitor.p" in df:
            p = df["monitor.p"].to_numpy(np.float64)
        else:
            cal = memo.get("calibrator") or memo.setdefault(
                "calibrator", Calibrator.from_dict(ref.meta["calibrator"]))
            p = cal.predict(score, _inputs(df))
        est = estimate_binary(score, p, ref.meta.get("decision_threshold", 0.5))
        if len(df) < settings.min_rows:
            est = {"rows": len(df), "roc_auc": None, "accuracy": None, "undefined": {
                "all": f"{len(df)} rows, fewer than min_rows ({settings.min_rows})"}}
        doc["estimated"] = est
        for k in ("roc_auc", "accuracy", "precision", "recall", "f1"):
            metrics[f"estimated.{k}"] = est.get(k)
        if cfg.evaluation.metric in est:
            metrics["estimated.degradation"] = _degradation(est[cfg.evaluation.metric], held,
                                                            higher)
    _where_and_why(cfg, ref, outs, df, doc, metrics, higher)
    if cfg.task != "forecast":
        doc["skew"] = _skew(stores, manifest, df, memo)
        metrics["skew.share"] = doc["skew"].get("share")
    lat = df["latency_ms"].to_numpy(np.float64) if len(df) else np.array([])
    metrics["latency.p99_ms"] = float(np.quantile(lat, 0.99)) if len(lat) else None
    doc["metrics"] = metrics
    return doc


def _where_and_why(cfg: Any, ref: Any, outs: dict[str, str], df: pd.DataFrame,
                   doc: dict[str, Any], metrics: dict[str, float | None],
                   higher: bool) -> None:
    """Residuals by input on the labelled rows (where the model fails) and the
    concept-drift verdict, into ``doc`` (and ``concept.drift`` into ``metrics``)."""
    from cd4ml.monitoring.residuals import concept_verdict, residuals_by_input

    quality = doc["quality"]
    if quality["state"] == "ok":
        lab = df[df["actual"].notna()].reset_index(drop=True)
        frame = _inputs(lab)
        if cfg.task == "forecast":  # by the request fields (series keys), not the date
            date = f"{str(cfg.data.time).lower()}"
            kinds = {c: "categorical" for c in frame.columns if c != date}
            pred, binary = lab.get("output.prediction"), False
        else:
            kinds = {c: s.kind for c, s in ref.features.items()}
            binary = "score" in outs
            pred = lab.get(outs["score"]) if binary else lab.get("output.prediction")
        if pred is None:
            doc["residuals"] = {"state": "not computed", "message": (
                "a multiclass classifier has no one residual per row")}
        else:
            doc["residuals"] = residuals_by_input(
                frame, lab["actual"], pred, kinds=kinds, summaries=ref.features,
                binary=binary)
    gap = None
    est, now = doc.get("estimated") or {}, metrics.get(f"quality.{cfg.evaluation.metric}")
    if est.get(cfg.evaluation.metric) is not None and now is not None:
        gap = _degradation(now, est[cfg.evaluation.metric], higher)
    drift = doc["drift"]
    drifted = None if drift.get("state") == "not applicable" else len(drift.get("drifted", []))
    doc["concept"] = concept_verdict(degradation=metrics.get("quality.degradation"),
                                     drifted_inputs=drifted, estimated_gap=gap)
    metrics["concept.drift"] = (None if doc["concept"]["state"] == "not judged"
                                else float(doc["concept"]["drifted"]))


def _skew(stores: Any, manifest: dict[str, Any], df: pd.DataFrame,
          memo: dict[str, Any]) -> dict[str, Any]:
    from cd4ml.pipeline.skew import compare_vectors

    names = [c.removeprefix("training.") for c in df.columns if c.startswith("training.")]
    if not names and len(df):  # not derived yet: the training path now
        df = _training_columns(stores, manifest, df, memo)
        names = [c.removeprefix("training.") for c in df.columns if c.startswith("training.")]
    served = df[[c for c in df.columns if c.startswith("feature.")]].rename(
        columns=lambda c: c.removeprefix("feature."))
    has = served.notna().any(axis=1).to_numpy() if len(served.columns) else np.zeros(len(df),
                                                                                     bool)
    refused = (df["monitor.refused"][has].dropna() if "monitor.refused" in df
               else pd.Series([], dtype=object))
    again = df[[f"training.{n}" for n in names]].to_numpy(np.float32)[has]
    return compare_vectors(names, again, str(refused.iloc[0]) if len(refused) else None,
                           _inputs(df)[has].reset_index(drop=True),
                           served[has].reset_index(drop=True), df["request_id"][has],
                           df["row"][has])


def _transform(stores: Any, manifest: dict[str, Any], memo: dict[str, Any]) -> Any:
    from cd4ml.registry.bundle import load_tabular_parts

    if "transform" not in memo:
        memo["transform"] = load_tabular_parts(stores.artifacts, manifest)[2]
    return memo["transform"]


def _training_columns(stores: Any, manifest: dict[str, Any], df: pd.DataFrame,
                      memo: dict[str, Any]) -> pd.DataFrame:
    """``df`` with ``training.<name>`` (the training path's features of the rows that
    were served a vector; NaN elsewhere) and ``monitor.refused``."""
    from cd4ml.pipeline.skew import training_path

    transform = _transform(stores, manifest, memo)
    names = list(transform.feature_names)
    served = df[[c for c in df.columns if c.startswith("feature.")]]
    has = served.notna().any(axis=1).to_numpy() if len(served.columns) else np.zeros(len(df),
                                                                                     bool)
    again = np.full((len(df), len(names)), np.nan, dtype=np.float32)
    refused: str | None = None
    if has.any():
        again[has], refused = training_path(transform,
                                            _inputs(df)[has].reset_index(drop=True))
    extra = pd.DataFrame(again, columns=[f"training.{n}" for n in names], index=df.index)
    extra["monitor.refused"] = pd.Series([refused if h else None for h in has],
                                         index=df.index, dtype=object)
    return pd.concat([df, extra], axis=1)


def derive(cfg: Any, stores: Any, ref: Any, df: pd.DataFrame, manifest: dict[str, Any],
           memo: dict[str, Any], *, multivariate: bool = False) -> pd.DataFrame:
    """``df`` with the :data:`DERIVED` columns its version's reference calls for: what
    :func:`judge_frame` would otherwise compute on every window, done once per row
    (reconstruction errors with ``multivariate`` only)."""
    out = df
    outs = output_map(manifest, list(ref.outputs))
    if "calibrator" in ref.meta and outs.get("score") in df.columns and len(df):
        from cd4ml.monitoring.estimate import Calibrator

        cal = memo.get("calibrator") or memo.setdefault(
            "calibrator", Calibrator.from_dict(ref.meta["calibrator"]))
        out = out.assign(**{"monitor.p": cal.predict(
            df[outs["score"]].to_numpy(np.float64), _inputs(df))})
    if multivariate and cfg.task != "forecast" and "reconstruction" in ref.meta and len(df):
        from cd4ml.monitoring.multivariate import Reconstruction

        rec = memo.get("reconstruction") or memo.setdefault(
            "reconstruction", Reconstruction.from_dict(ref.meta["reconstruction"]))
        out = out.assign(**{"monitor.recon": rec.errors(_inputs(df))})
    if cfg.task != "forecast" and len(df):
        out = _training_columns(stores, manifest, out, memo)
    return out
