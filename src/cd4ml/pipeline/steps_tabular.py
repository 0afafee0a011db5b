"""Stages of a tabular task: join the sources into one table, split its rows, compare
candidates on validation, judge on the holdout, bundle what the gate lets through.

Each fit is one function (:func:`_fit`): the transform (encoders, imputation) is fitted
on the fit rows, the model on the rows it produces; the bundle holds both, and serving
applies that transform with the same code. What differs between classification and
regression (the target's encoding, the report) is a :class:`_Kind`, looked up once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import DataConfig, EvaluationConfig, InputsConfig, ModelSpec, SplitConfig
from cd4ml.data import load_schema, read_snapshot_bytes
from cd4ml.errors import DataError, PipelineError

__all__ = ["table", "split", "validate_candidate", "holdout", "bundle"]

#: a classification target with more distinct values than this is refused
MAX_CLASSES = 50


def _frames(ctx: Any, inputs: dict[str, Any], data: DataConfig) -> dict[str, pd.DataFrame]:
    out = {}
    for name in data.sources:
        digest = inputs[f"validate:{name}.data"]
        df = ctx.memo.get(digest)
        out[name] = df if df is not None else read_snapshot_bytes(ctx.artifacts.get_bytes(digest))
    return out


def _classes(y: pd.Series, data: DataConfig) -> list[Any]:
    """The declared classes, or the target's values; refuse what cannot be a class."""
    seen = pd.unique(y.dropna())
    if data.classes is not None:
        declared = list(data.classes)
        extra = [v for v in seen if not any(_same(v, c) for c in declared)]
        if extra:
            raise DataError(f"data.target {data.target!r} holds value(s) "
                            f"{sorted(map(_py, extra))[:10]} that are not among the declared "
                            f"classes {declared} (data.classes)")
        return declared
    if len(seen) > MAX_CLASSES or (pd.api.types.is_float_dtype(y) and
                                   not np.all(np.mod(seen.astype(float), 1) == 0)):
        raise DataError(f"data.target {data.target!r} has {len(seen):,} distinct values; "
                        f"did you mean task: regression? (a classifier's target holds "
                        f"classes, at most {MAX_CLASSES})")
    if len(seen) < 2:
        raise DataError(f"data.target {data.target!r} holds one value only ({seen.tolist()}); "
                        f"a classifier needs at least two classes")
    return sorted(_py(v) for v in seen)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) or str(a) == str(b)
    except (TypeError, ValueError):
        return False


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def table(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Join the validated sources into one table and fix the model's signature."""
    from cd4ml.features.panel import join_sources
    from cd4ml.features.tabular import tabular_spec

    data, cfg_inputs = DataConfig(**params["data"]), InputsConfig(**params["inputs"])
    frames = _frames(ctx, inputs, data)
    df = join_sources(frames[data.main], frames, data, None)
    need = [c for c in [data.target, *([data.id] if data.id else []), *params["columns"]]
            if c not in df.columns]
    if need:
        raise DataError(f"column {need[0]!r} (named in data or evaluation) is not in the "
                        f"data; columns: {', '.join(map(str, df.columns))}")
    y = df[data.target]
    if y.isna().any():
        raise DataError(f"data.target {data.target!r}: {int(y.isna().sum()):,} rows have no "
                        f"target; drop them or fill them before training")
    if params["task"] == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise DataError(f"data.target {data.target!r} is {y.dtype}, not numbers; a "
                        f"regression target must be numeric (or use task: classification)")
    classes = _classes(y, data) if params["task"] == "classification" else None
    schemas = [load_schema(ctx.path(p)) for p in params["schema_paths"]]
    spec = tabular_spec(schemas, df, cfg_inputs, target=data.target, id=data.id,
                        classes=classes, task=params["task"])
    return {"table": ctx.put_frame(df), "spec": spec.to_dict(), "rows": len(df),
            "classes": classes, "inputs": [c.name for c in spec.columns]}


def split(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Each row's role: train, validation, holdout or excluded."""
    from cd4ml.data.split import assign_roles

    df = ctx.frame(inputs["table.table"])
    rs = assign_roles(df, SplitConfig(**params["split"]), target=params["target"],
                      classification=params["task"] == "classification")
    roles = pd.DataFrame({"role": pd.Categorical(rs.roles)})
    return {"roles": ctx.put_frame(roles), "summary": rs.summary()}


# -- what differs between classification and regression ------------------------------
@dataclass(frozen=True)
class _Kind:
    encode: Callable[[pd.Series, list[Any] | None], np.ndarray]
    report: Callable[..., dict[str, Any]]


def _class_index(y: pd.Series, classes: list[Any] | None) -> np.ndarray:
    assert classes is not None
    codes = pd.Categorical(y.map(_py), categories=classes).codes
    if (codes < 0).any():
        raise DataError(f"target values {sorted(set(y[codes < 0].map(_py)))[:5]} are not "
                        f"among the classes {classes}")
    return codes.astype(np.int64)


def _numbers(y: pd.Series, classes: list[Any] | None) -> np.ndarray:
    return pd.to_numeric(y).to_numpy(dtype=np.float64)


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


_KINDS = {"classification": _Kind(_class_index, _classification),
          "regression": _Kind(_numbers, _regression)}


# -- fitting and scoring -------------------------------------------------------------
@dataclass
class _Data:
    df: pd.DataFrame
    spec: Any
    roles: np.ndarray
    kind: _Kind
    task: str

    @classmethod
    def of(cls, ctx: Any, inputs: dict[str, Any], task: str) -> _Data:
        from cd4ml.features.tabular import TabularSpec

        roles = ctx.frame(inputs["split.roles"])["role"].astype(str).to_numpy()
        return cls(ctx.frame(inputs["table.table"]), TabularSpec.from_dict(inputs["table.spec"]),
                   roles, _KINDS[task], task)

    def rows(self, *roles: str) -> np.ndarray:
        mask = np.isin(self.roles, roles)
        if not mask.any():
            raise PipelineError(f"no {' or '.join(roles)} rows (split.*)")
        return mask

    def y(self, rows: np.ndarray) -> np.ndarray:
        return self.kind.encode(self.df.loc[rows, self.spec.target], self.spec.classes)


def _fit(d: _Data, spec: ModelSpec, rows: np.ndarray, seed: int) -> tuple[Any, Any]:
    """The transform fitted on ``rows``, and the model fitted on what it makes of them."""
    from cd4ml.features.tabular import TabularTransform
    from cd4ml.training.fit import fit_model

    frame = d.df.loc[rows]
    transform = TabularTransform.fit(frame, d.spec)
    X = pd.DataFrame(transform.matrix(frame), columns=transform.feature_names)
    model = fit_model(spec, X, d.y(rows), None, seed=seed, task=d.task,
                      categorical=transform.categorical, classes=d.spec.classes)
    return transform, model


def _predict(d: _Data, transform: Any, model: Any, rows: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(transform.matrix(d.df.loc[rows])))


def _threshold(ev: EvaluationConfig, d: _Data, y: np.ndarray, out: np.ndarray) -> float | None:
    """Binary classification: the configured threshold, or the one that maximises
    accuracy on these (validation) rows; None for other tasks."""
    if d.task != "classification" or out.ndim != 2 or out.shape[1] != 2:
        return None
    if ev.decision_threshold == "accuracy":
        from cd4ml.evaluation.classification import choose_threshold

        return float(choose_threshold(y, out[:, 1]))
    return float(ev.decision_threshold)


def _frame(d: _Data, rows: np.ndarray, ev: EvaluationConfig) -> pd.DataFrame:
    cols = list(dict.fromkeys([*ev.slices, *ev.protected]))
    return d.df.loc[rows, cols].reset_index(drop=True)


def validate_candidate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                       ) -> dict[str, Any]:
    """Fit on the training rows (validation share held back), score the validation rows."""
    ev, spec = EvaluationConfig(**params["evaluation"]), ModelSpec(**params["spec"])
    d = _Data.of(ctx, inputs, params["task"])
    fit_rows, val_rows = d.rows("train"), d.rows("validation")
    transform, model = _fit(d, spec, fit_rows, params["seed"])
    out = _predict(d, transform, model, val_rows)
    y = d.y(val_rows)
    threshold = _threshold(ev, d, y, out)
    report = d.kind.report(y, out, classes=d.spec.classes, threshold=threshold,
                           frame=None, ev=ev, full=False, seed=params["seed"])
    report["fit"] = {"rows": int(fit_rows.sum()), "roles": ["train"]}
    report["scored"] = {"rows": int(val_rows.sum()), "roles": ["validation"]}
    return {"report": report, "metric": report["overall"][ev.metric],
            "threshold": threshold}


def _save(ctx: Any, d: _Data, params: dict[str, Any], spec: dict[str, Any], transform: Any,
          model: Any, threshold: float | None, trained_on: dict[str, Any]) -> str:
    from cd4ml.registry.bundle import save_tabular_bundle

    return save_tabular_bundle(
        ctx.artifacts, model_name=params["model_name"], recipe=spec["name"],
        kind=params["kind"], task=d.task, predictor=model, spec=d.spec, transform=transform,
        threshold=threshold, trained_on=trained_on, extra={"model_spec": spec})


def holdout(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fit on all training rows (validation included), score the holdout, keep the bundle:
    this fitted model is the one a registration serves."""
    spec = params.get("spec") or inputs.get("select.spec")
    if spec is None:
        return {"report": None, "name": None, "bundle": None}
    threshold = inputs.get("select.threshold", inputs.get(
        f"candidate:{spec['name']}.threshold"))
    ev = EvaluationConfig(**params["evaluation"])
    d = _Data.of(ctx, inputs, params["task"])
    fit_rows, hold_rows = d.rows("train", "validation"), d.rows("holdout")
    transform, model = _fit(d, ModelSpec(**spec), fit_rows, params["seed"])
    out = _predict(d, transform, model, hold_rows)
    report = d.kind.report(d.y(hold_rows), out, classes=d.spec.classes, threshold=threshold,
                           frame=_frame(d, hold_rows, ev), ev=ev, full=True,
                           seed=params["seed"])
    report["fit"] = {"rows": int(fit_rows.sum()), "roles": ["train", "validation"]}
    report["scored"] = {"rows": int(hold_rows.sum()), "roles": ["holdout"]}
    trained_on = {"rows": int(fit_rows.sum()), "roles": ["train", "validation"],
                  "note": "fitted on the training rows only: the holdout is out-of-sample"}
    digest = _save(ctx, d, params, spec, transform, model, threshold, trained_on)
    return {"report": report, "name": spec["name"], "bundle": digest,
            "trained_on": trained_on}


def bundle(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The bundle the gate chose: the holdout's fitted model as it is, or with
    ``split.refit_on_all`` refitted on the training and holdout rows."""
    spec = inputs.get("select.spec") or inputs.get("gate.best_baseline_spec")
    digest = inputs.get("holdout:selected.bundle") or inputs.get("gate.best_baseline_bundle")
    threshold = inputs.get("select.threshold", inputs.get("gate.best_baseline_threshold"))
    manifest = ctx.artifacts.get_json(digest)
    trained_on = manifest["trained_on"]
    if params["refit_on_all"]:
        d = _Data.of(ctx, inputs, params["task"])
        rows = d.rows("train", "validation", "holdout")
        transform, model = _fit(d, ModelSpec(**spec), rows, params["seed"])
        trained_on = {"rows": int(rows.sum()), "roles": ["train", "validation", "holdout"],
                      "note": "refitted on the training and holdout rows "
                              "(split.refit_on_all): the holdout is NOT out-of-sample for "
                              "this model"}
        digest = _save(ctx, d, params, spec, transform, model, threshold, trained_on)
    return {"digest": digest, "recipe": spec["name"], "kind": params["kind"],
            "trained_on": trained_on}
