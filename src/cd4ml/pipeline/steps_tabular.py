"""Stages of a tabular task: join the sources into one table, split its rows, compare
candidates on validation, judge on the holdout, bundle what the gate lets through.

Each fit is one function (:func:`_fit`): the transform (encoders, imputation) is fitted
on the fit rows, the model on the rows it produces; the bundle holds both, and serving
applies that transform with the same code. What differs between classification and
regression (the target's encoding, the report) is a :class:`_Kind`, looked up once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import DataConfig, EvaluationConfig, InputsConfig, ModelSpec, SplitConfig
from cd4ml.data import load_schema
from cd4ml.errors import DataError, ModelError, PipelineError
from cd4ml.pipeline.steps_data import validated_frames
from cd4ml.training.fit import fit_failure

_log = logging.getLogger("cd4ml.pipeline")

__all__ = ["table", "split", "validate_candidate", "holdout", "bundle"]

def table(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Join the validated sources into one table and fix the model's signature."""
    from cd4ml.features.panel import join_sources
    from cd4ml.features.tabular import tabular_spec

    data, cfg_inputs = DataConfig(**params["data"]), InputsConfig(**params["inputs"])
    frames = validated_frames(ctx, inputs, data)
    df = join_sources(frames[data.main], frames, data, None)
    need = [c for c in params["columns"] if c not in df.columns]
    if need:
        raise DataError(f"column {need[0]!r} (evaluation.protected or evaluation.slices) is "
                        f"not in the data; columns: {', '.join(map(str, df.columns))}")
    schemas = [load_schema(ctx.path(p)) for p in params["schema_paths"]]
    spec = tabular_spec(schemas, df, cfg_inputs, target=data.target, id=data.id,
                        classes=data.classes, task=params["task"])
    return {"table": ctx.put_frame(df), "spec": spec.to_dict(), "rows": len(df),
            "classes": spec.classes, "inputs": spec.names}


def split(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Each row's role: train, validation, holdout or excluded."""
    from cd4ml.data.tabular_split import assign_roles

    df = ctx.frame(inputs["table.table"])
    rs = assign_roles(df, SplitConfig(**params["split"]), target=params["target"],
                      classification=params["task"] == "classification")
    roles = pd.DataFrame({"role": pd.Categorical(rs.roles)})
    return {"roles": ctx.put_frame(roles), "summary": rs.summary()}


# -- what differs between classification and regression ------------------------------
@dataclass(frozen=True)
class _Kind:
    """A task's report and decision threshold (its target is encoded by
    ``TabularSpec.encode_target``)."""

    report: Callable[..., dict[str, Any]]
    threshold: Callable[[EvaluationConfig, np.ndarray, np.ndarray], float | None]


def _classification(y: np.ndarray, out: np.ndarray, *, classes: list[Any],
                    threshold: float | None, frame: pd.DataFrame | None,
                    ev: EvaluationConfig, full: bool, seed: int) -> dict[str, Any]:
    from cd4ml.evaluation.classification import classification_report

    return classification_report(
        y, out, classes=classes, threshold=threshold, frame=frame,
        slices=ev.slices if full else (), protected=ev.protected if full else (),
        min_group_size=ev.min_group_size, bootstrap=ev.bootstrap if full else 0, seed=seed,
        bins=ev.calibration_bins, metric=ev.metric)


def _regression(y: np.ndarray, out: np.ndarray, *, classes: list[Any] | None,
                threshold: float | None, frame: pd.DataFrame | None,
                ev: EvaluationConfig, full: bool, seed: int) -> dict[str, Any]:
    from cd4ml.evaluation.regression import regression_report

    return regression_report(
        y, out, frame=frame, slices=ev.slices if full else (),
        protected=ev.protected if full else (), min_group_size=ev.min_group_size,
        bootstrap=ev.bootstrap if full else 0, seed=seed, metric=ev.metric)


def _class_threshold(ev: EvaluationConfig, y: np.ndarray, out: np.ndarray) -> float | None:
    """Binary: the configured threshold, or the one that maximises accuracy on these
    (validation) rows; multiclass labels are the most probable class (None)."""
    if out.ndim != 2 or out.shape[1] != 2:
        return None
    if ev.decision_threshold == "accuracy":
        from cd4ml.evaluation.classification import choose_threshold

        return float(choose_threshold(y, out[:, 1]))
    return float(ev.decision_threshold)


_KINDS = {"classification": _Kind(_classification, _class_threshold),
          "regression": _Kind(_regression, lambda ev, y, out: None)}


# -- fitting and scoring -------------------------------------------------------------
@dataclass
class _Data:
    df: pd.DataFrame
    spec: Any
    roles: np.ndarray
    kind: _Kind
    task: str
    age_column: str | None = None  #: the time rows are aged by (recency_half_life)

    @classmethod
    def of(cls, ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> _Data:
        from cd4ml.features.tabular import TabularSpec

        roles = ctx.frame(inputs["split.roles"])["role"].astype(str).to_numpy()
        task = params["task"]
        return cls(ctx.frame(inputs["table.table"]), TabularSpec.from_dict(inputs["table.spec"]),
                   roles, _KINDS[task], task, params.get("age_column"))

    def rows(self, *roles: str) -> np.ndarray:
        mask = np.isin(self.roles, roles)
        if not mask.any():
            raise PipelineError(f"no {' or '.join(roles)} rows (split.*)")
        return mask

    def y(self, rows: np.ndarray) -> np.ndarray:
        return self.spec.encode_target(self.df.loc[rows, self.spec.target])


def _fit(d: _Data, spec: ModelSpec, rows: np.ndarray, seed: int) -> tuple[Any, Any]:
    """The transform fitted on ``rows``, and the model fitted on what it makes of them."""
    from cd4ml.features.tabular import TabularTransform
    from cd4ml.training.fit import fit_model

    frame = d.df.loc[rows]
    transform = TabularTransform.fit(d.spec, frame)
    X = pd.DataFrame(transform.matrix(frame), columns=transform.feature_names)
    model = fit_model(spec, X, d.y(rows), None, seed=seed, task=d.task,
                      categorical=transform.categorical, classes=d.spec.classes,
                      times=_times(d, spec, frame))
    return transform, model


def _times(d: _Data, spec: ModelSpec, frame: pd.DataFrame) -> Any:
    """The fit rows' times for ``params.recency_half_life`` (None without it)."""
    from cd4ml.training.recency import HALF_LIFE

    if spec.params.get(HALF_LIFE) is None or d.age_column is None:
        return None
    v = frame[d.age_column]
    if pd.api.types.is_datetime64_any_dtype(v):
        return v
    if pd.api.types.is_numeric_dtype(v) or pd.api.types.is_bool_dtype(v):
        raise ModelError(f"models.{spec.name}.params.{HALF_LIFE}: the rows are aged by "
                         f"{d.age_column!r}, which holds {v.dtype} values, not times")
    return pd.to_datetime(v, errors="coerce", utc=True, format="ISO8601")


def _predict(d: _Data, transform: Any, model: Any, rows: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(transform.matrix(d.df.loc[rows])))


def _frame(d: _Data, rows: np.ndarray, ev: EvaluationConfig) -> pd.DataFrame:
    cols = list(dict.fromkeys([*ev.slices, *ev.protected]))
    return d.df.loc[rows, cols].reset_index(drop=True)


def validate_candidate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                       ) -> dict[str, Any]:
    """Fit on the training rows (validation share held back), score the validation rows."""
    ev, spec = EvaluationConfig(**params["evaluation"]), ModelSpec(**params["spec"])
    d = _Data.of(ctx, inputs, params)
    fit_rows, val_rows = d.rows("train"), d.rows("validation")
    try:
        transform, model = _fit(d, spec, fit_rows, params["seed"])
    except ModelError as exc:  # this model fails alone (see steps_model)
        return {"report": None, "metric": None, "threshold": None, "error": fit_failure(exc)}
    out = _predict(d, transform, model, val_rows)
    y = d.y(val_rows)
    threshold = d.kind.threshold(ev, y, out)
    report = d.kind.report(y, out, classes=d.spec.classes, threshold=threshold,
                           frame=None, ev=ev, full=False, seed=params["seed"])
    report["fit"] = {"rows": int(fit_rows.sum()), "roles": ["train"]}
    report["scored"] = {"rows": int(val_rows.sum()), "roles": ["validation"]}
    return {"report": report, "metric": report["overall"][ev.metric],
            "threshold": threshold, "error": None}


def _save(ctx: Any, d: _Data, params: dict[str, Any], spec: dict[str, Any], transform: Any,
          model: Any, threshold: float | None, fit_rows: np.ndarray,
          trained_on: dict[str, Any]) -> str:
    from cd4ml.registry.bundle import save_tabular_bundle

    return save_tabular_bundle(
        ctx.artifacts, model_name=params["model_name"], recipe=spec["name"],
        kind=params["kind"], predictor=model, spec=d.spec, transform=transform,
        rows=transform.matrix(d.df.loc[fit_rows]), trained_on=trained_on,
        decision_threshold=threshold, extra={"model_spec": spec})


def holdout(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fit on all training rows (validation included), score the holdout, keep the bundle:
    this fitted model is the one a registration serves; the scored rows are kept
    (``outputs``) for monitoring's reference."""
    spec = params.get("spec") or inputs.get("select.spec")
    if spec is None:
        return {"report": None, "name": None, "bundle": None, "outputs": None, "error": None}
    threshold = inputs.get("select.threshold", inputs.get(
        f"candidate:{spec['name']}.threshold"))
    ev = EvaluationConfig(**params["evaluation"])
    d = _Data.of(ctx, inputs, params)
    fit_rows, hold_rows = d.rows("train", "validation"), d.rows("holdout")
    try:
        transform, model = _fit(d, ModelSpec(**spec), fit_rows, params["seed"])
    except ModelError as exc:
        return {"report": None, "name": spec["name"], "bundle": None, "outputs": None,
                "error": fit_failure(exc)}
    out = _predict(d, transform, model, hold_rows)
    report = d.kind.report(d.y(hold_rows), out, classes=d.spec.classes, threshold=threshold,
                           frame=_frame(d, hold_rows, ev), ev=ev, full=True,
                           seed=params["seed"])
    report["fit"] = {"rows": int(fit_rows.sum()), "roles": ["train", "validation"]}
    report["scored"] = {"rows": int(hold_rows.sum()), "roles": ["holdout"]}
    trained_on = {"rows": int(fit_rows.sum()), "roles": ["train", "validation"],
                  "note": "fitted on the training rows only: the holdout is out-of-sample"}
    digest = _save(ctx, d, params, spec, transform, model, threshold, fit_rows,
                   trained_on)
    return {"report": report, "name": spec["name"], "bundle": digest,
            "trained_on": trained_on, "outputs": ctx.put_frame(_scored(d, hold_rows, out)),
            "error": None}


def _scored(d: _Data, rows: np.ndarray, out: np.ndarray) -> pd.DataFrame:
    """The holdout's outputs (a binary classifier's ``score``, the positive class's
    probability; a multiclass one's ``proba.<class>``; a regressor's ``prediction``), its
    labels (``actual``: class indices or values) and inputs (``input.<name>``):
    monitoring's reference for prediction drift and for estimating performance without
    labels."""
    if d.spec.classes is None:
        frame = pd.DataFrame({"prediction": np.asarray(out, dtype=np.float64)})
    else:
        proba = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
        frame = (pd.DataFrame({"score": proba[:, 1]}) if proba.shape[1] == 2 else
                 pd.DataFrame({f"proba.{c}": proba[:, i]
                               for i, c in enumerate(d.spec.classes)}))
    frame["actual"] = d.y(rows)
    inputs = d.df.loc[rows, d.spec.names].reset_index(drop=True)
    return pd.concat([frame, inputs.add_prefix("input.")], axis=1)


def _compiled(model: Any, sample: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """A compiled predictor of a LightGBM model (``registry.compiled``), or None and why."""
    import time

    from cd4ml.errors import Cd4mlError
    from cd4ml.registry.compiled import build_compiled

    booster = getattr(model, "booster", None)
    if booster is None:
        return None, {"status": f"none: {model.model_type} models are not compiled"}
    t0 = time.perf_counter()
    try:
        built = build_compiled(booster, sample)
    except Cd4mlError as exc:  # lleaves missing, or it cannot compile this booster
        _log.warning("no compiled predictor: %s", exc)
        return None, {"status": f"none: {exc}"}
    return built, {"status": "built", "seconds": round(time.perf_counter() - t0, 1)}


def bundle(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The bundle the gate chose: the holdout's fitted model (``split.refit_on_all``:
    refitted on the training and holdout rows), with a compiled predictor when the model
    is LightGBM (built here, once; a server uses it only after it matched the model)."""
    from cd4ml.registry.bundle import load_tabular_parts, save_tabular_bundle

    spec = inputs.get("select.spec") or inputs.get("gate.best_baseline_spec")
    digest = inputs.get("holdout:selected.bundle") or inputs.get("gate.best_baseline_bundle")
    threshold = inputs.get("select.threshold", inputs.get("gate.best_baseline_threshold"))
    manifest = ctx.artifacts.get_json(digest)
    trained_on = manifest["trained_on"]
    model, tspec, transform, sample, _ = load_tabular_parts(ctx.artifacts, manifest)
    rows = sample
    if params["refit_on_all"]:
        d = _Data.of(ctx, inputs, params)
        fit = d.rows("train", "validation", "holdout")
        transform, model = _fit(d, ModelSpec(**spec), fit, params["seed"])
        rows = transform.matrix(d.df.loc[fit])
        trained_on = {"rows": int(fit.sum()), "roles": ["train", "validation", "holdout"],
                      "note": "refitted on the training and holdout rows "
                              "(split.refit_on_all): the holdout is NOT out-of-sample for "
                              "this model"}
    if params.get("compile", True):
        compiled, build = _compiled(model, rows if sample is None else sample)
    else:
        compiled, build = None, {"status": "none: registry.compile is false"}
    digest = save_tabular_bundle(
        ctx.artifacts, model_name=params["model_name"], recipe=spec["name"],
        kind=params["kind"], predictor=model, spec=tspec, transform=transform, rows=rows,
        trained_on=trained_on, decision_threshold=threshold, compiled=compiled,
        extra={"model_spec": spec, "compiled_build": build})
    return {"digest": digest, "recipe": spec["name"], "kind": params["kind"],
            "trained_on": trained_on, "compiled": build["status"]}
