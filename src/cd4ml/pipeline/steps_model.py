"""Model stages: compare candidates on validation, judge on holdout, gate, refit, bundle.

Candidates are compared on the validation window; the selected recipe and the baselines
are then fitted on everything before the holdout and judged on it (never used for
selection); a version that is registered is refitted on all data up to the snapshot's end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import EvaluationConfig, GateConfig, ModelSpec
from cd4ml.errors import PipelineError
from cd4ml.evaluation import apply_gate, compare, evaluate, evaluation_weights
from cd4ml.features import FeatureSpec
from cd4ml.registry.bundle import save_bundle
from cd4ml.registry.predictors import SeriesBaselinePredictor
from cd4ml.training.fit import fit_model

__all__ = ["validate_candidate", "select", "holdout", "gate", "bundle"]


def _weights(pnl: pd.DataFrame, ev: EvaluationConfig) -> np.ndarray:
    frame = pnl
    if ev.weight_column is not None and ev.weight_column in pnl.columns:
        frame = pd.DataFrame({ev.weight_column: pnl[ev.weight_column].fillna(False)
                              .astype(bool)})
    w = evaluation_weights(frame, ev)
    return np.ones(len(pnl)) if w is None else np.asarray(w, dtype=np.float64)


def _fit_and_score(ctx: Any, inputs: dict[str, Any], spec: ModelSpec, seed: int,
                   ev: EvaluationConfig, fit_end: str, score: tuple[str, str],
                   ) -> tuple[dict[str, Any], pd.DataFrame]:
    """The report of a fit up to ``fit_end`` scored on the ``score`` window, and the
    scored rows (series keys, date, prediction, actual)."""
    pnl = ctx.frame(inputs["panel.panel"])
    X = ctx.frame(inputs["features.features"])
    fspec = FeatureSpec.from_dict(inputs["features.spec"])
    y = pd.to_numeric(pnl[fspec.target]).to_numpy(dtype=np.float64)
    w = _weights(pnl, ev)
    t = pnl[fspec.time]
    fit_rows = (t <= pd.Timestamp(fit_end)).to_numpy() & ~np.isnan(y)
    model = fit_model(spec, X[fit_rows], y[fit_rows], w[fit_rows], seed=seed, keys=fspec.keys)
    lo, hi = pd.Timestamp(score[0]), pd.Timestamp(score[1])
    rows = ((t >= lo) & (t <= hi)).to_numpy() & ~np.isnan(y)
    if not rows.any():
        raise PipelineError(f"no rows with a known target between {lo.date()} and {hi.date()}")
    pred = model.predict(X.to_numpy(np.float32)[rows])
    step = pd.Timedelta(days=fspec.frequency_days)
    frame = pnl.loc[rows, [*dict.fromkeys([*fspec.keys, *ev.slices])]].copy()
    frame["_y"], frame["_p"], frame["_w"] = y[rows], pred, w[rows]
    frame["_ahead"] = ((t[rows] - pd.Timestamp(fit_end)) / step).to_numpy()
    report = evaluate(frame, pred="_p", target="_y", weight="_w", slices=ev.slices,
                      horizon_col="_ahead")
    report["fit"] = {"end": fit_end, "rows": int(fit_rows.sum())}
    report["scored"] = {"start": score[0], "end": score[1], "rows": int(rows.sum())}
    if isinstance(model, SeriesBaselinePredictor):
        report["fallbacks"] = model.fallback_counts(X.to_numpy(np.float32)[rows])
    scored = pnl.loc[rows, [*fspec.keys, fspec.time]].reset_index(drop=True)
    scored["prediction"], scored["actual"] = pred, y[rows]
    return report, scored


def validate_candidate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                       ) -> dict[str, Any]:
    """Fit on the training window, score the validation window."""
    w = inputs["split.windows"]
    ev = EvaluationConfig(**params["evaluation"])
    report, _ = _fit_and_score(ctx, inputs, ModelSpec(**params["spec"]), params["seed"], ev,
                               w["train_end"], (w["validation_start"], w["validation_end"]))
    report.pop("slices", None)
    return {"report": report, "metric": report["overall"][ev.metric]}


def select(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The candidate with the best validation metric (ties: the first listed)."""
    metric = params["metric"]
    reports = {name: inputs[f"candidate:{name}.report"] for name in params["names"]}
    board = compare(reports, metric, baselines=params["baselines"], higher=params.get("higher"))
    cands = [r for r in board if not r["is_baseline"]]
    best = cands[0]["model"] if cands else None
    # a searched candidate's recipe is its best trial's (``candidate:<name>.spec``)
    spec = inputs.get(f"candidate:{best}.spec") or \
        next((s for s in params["specs"] if s["name"] == best), None)
    # a classifier's decision threshold, fixed or chosen on validation (None otherwise)
    threshold = reports[best]["overall"].get("threshold") if best else None
    return {"selected": best, "spec": spec, "leaderboard": board, "threshold": threshold}


def holdout(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fit on everything before the holdout, score the holdout (slices and weeks ahead);
    the scored rows are kept (``outputs``): monitoring's reference for prediction drift."""
    spec = params.get("spec") or inputs.get("select.spec")
    if spec is None:
        return {"report": None, "name": None, "outputs": None}
    w = inputs["split.windows"]
    ev = EvaluationConfig(**params["evaluation"])
    report, scored = _fit_and_score(ctx, inputs, ModelSpec(**spec), params["seed"], ev,
                                    w["validation_end"], (w["holdout_start"], w["holdout_end"]))
    return {"report": report, "name": spec["name"], "outputs": ctx.put_frame(scored)}


def gate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Apply the gate rules to the selected recipe's holdout report."""
    cfg, metric = GateConfig(**params["gate"]), params["metric"]
    baselines = {n: inputs[f"holdout:{n}.report"] for n in params["baselines"]}
    cand = inputs["holdout:selected.report"]
    if cfg.baseline == "best":
        sign = -1.0 if params.get("higher") else 1.0
        best = min(baselines, key=lambda n: (sign * baselines[n]["overall"][metric], n))
    else:
        best = cfg.baseline
    best_spec = next(s for s in params["specs"] if s["name"] == best)
    out = {"passed": False, "report": None, "best_baseline": best,
           "best_baseline_spec": best_spec, "candidate": None,
           "best_baseline_bundle": inputs.get(f"holdout:{best}.bundle"),
           "best_baseline_threshold": baselines[best]["overall"].get("threshold")}
    if cand is not None:
        report = apply_gate(cand, baselines, cfg, metric=metric, higher=params.get("higher"))
        report["candidate"] = inputs["holdout:selected.name"]
        out.update(passed=bool(report["passed"]), report=report,
                   candidate=report["candidate"])
    out["failed"] = not out["passed"]
    return out


def bundle(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Refit a recipe on all data up to the snapshot's end and save it as a bundle."""
    spec = inputs.get("select.spec") or inputs.get("gate.best_baseline_spec")
    pnl = ctx.frame(inputs["panel.panel"])
    pnl.attrs["history_end"] = inputs["panel.history_end"]
    X = ctx.frame(inputs["features.features"])
    fspec = FeatureSpec.from_dict(inputs["features.spec"])
    ev = EvaluationConfig(**params["evaluation"])
    y = pd.to_numeric(pnl[fspec.target]).to_numpy(dtype=np.float64)
    rows = ~np.isnan(y)
    model = fit_model(ModelSpec(**spec), X[rows], y[rows], _weights(pnl, ev)[rows],
                      seed=params["seed"], keys=fspec.keys)
    t = pnl[fspec.time]
    trained_on = {"start": str(t[rows].min().date()), "end": str(t[rows].max().date()),
                  "rows": int(rows.sum()),
                  "note": "refit with the gated recipe on all data up to the snapshot's end"}
    digest = save_bundle(ctx.artifacts, model_name=params["model_name"], recipe=spec["name"],
                         kind=params["kind"], predictor=model, spec=fspec, history=pnl,
                         trained_on=trained_on, extra={"model_spec": spec})
    return {"digest": digest, "recipe": spec["name"], "kind": params["kind"],
            "trained_on": trained_on}
