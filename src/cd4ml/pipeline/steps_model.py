"""Model stages: compare candidates on validation, judge on holdout, gate, refit, bundle.

Candidates are compared on the validation window; the selected recipe and the baselines
are then fitted on everything before the holdout and judged on it (never used for
selection); a version that is registered is refitted on all data up to the snapshot's end.

A model that cannot be fitted (a :class:`ModelError`: no usable training rows, a
parameter its library refuses) fails alone: its stage's ``report`` is None and ``error``
says why, the leaderboard lists it with its error, select skips it, and the baselines
decide when no candidate is left. Anything else (a bug, a data or window problem shared
by every model) still stops the run. When no model at all can be evaluated on
validation, select stops the run with one line listing each model's error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import EvaluationConfig, GateConfig, ModelSpec
from cd4ml.errors import ModelError, PipelineError
from cd4ml.evaluation import apply_gate, compare, evaluate, evaluation_weights
from cd4ml.features import FeatureSpec
from cd4ml.registry.blend import BlendPredictor, mix
from cd4ml.registry.bundle import save_bundle
from cd4ml.registry.predictors import SeriesBaselinePredictor
from cd4ml.training.fallback import SliceWeight, choose_weights
from cd4ml.training.fit import fit_failure, fit_model

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
                   fallback: dict[str, Any] | None = None,
                   ) -> tuple[dict[str, Any], pd.DataFrame]:
    """The report of a fit up to ``fit_end`` scored on the ``score`` window, and the
    scored rows (series keys, date, prediction, actual). With a ``fallback`` (its
    baseline's spec, and the weights chosen on validation, or none yet: choose them on
    this window), the model gives way to the baseline per slice."""
    pnl = ctx.frame(inputs["panel.panel"])
    X = ctx.frame(inputs["features.features"])
    fspec = FeatureSpec.from_dict(inputs["features.spec"])
    y = pd.to_numeric(pnl[fspec.target]).to_numpy(dtype=np.float64)
    w = _weights(pnl, ev)
    t = pnl[fspec.time]
    fit_rows = (t <= pd.Timestamp(fit_end)).to_numpy() & ~np.isnan(y)
    model = fit_model(spec, X[fit_rows], y[fit_rows], w[fit_rows], seed=seed, keys=fspec.keys,
                      times=t[fit_rows])
    lo, hi = pd.Timestamp(score[0]), pd.Timestamp(score[1])
    rows = ((t >= lo) & (t <= hi)).to_numpy() & ~np.isnan(y)
    if not rows.any():
        raise PipelineError(f"no rows with a known target between {lo.date()} and {hi.date()}")
    Xs = X.to_numpy(np.float32)[rows]
    pred = model.predict(Xs)
    step = pd.Timedelta(days=fspec.frequency_days)
    frame = pnl.loc[rows, [*dict.fromkeys([*fspec.keys, *ev.slices])]].copy()
    frame["_y"], frame["_w"] = y[rows], w[rows]
    frame["_ahead"] = ((t[rows] - pd.Timestamp(fit_end)) / step).to_numpy()
    gave_way = None
    if fallback is not None:
        alone = evaluate(frame.assign(_p=pred), pred="_p", target="_y", weight="_w",
                         slices=[], horizon_col=None)["overall"]
        base = fit_model(ModelSpec(**fallback["baseline"]), X[fit_rows], y[fit_rows],
                         w[fit_rows], seed=seed, keys=fspec.keys, times=t[fit_rows])
        by = fallback["by"]
        weights = fallback.get("weights")
        chosen = None
        base_pred = base.predict(Xs)
        if weights is None:  # validation: choose here
            chosen = choose_weights(X.loc[rows, by], y[rows], w[rows], pred, base_pred,
                                    blend=fallback["blend"], metric=ev.metric,
                                    margin_pct=fallback.get("margin_pct", 0.0))
            weights = [[*c.values, c.model_weight] for c in chosen]
        model = BlendPredictor(model, base, by=by, weights=weights,
                               baseline_name=fallback["baseline"]["name"])
        a = model.model_weight(Xs)
        pred = mix(a, pred, base_pred)  # what model.predict(Xs) answers, each part once
        gave_way = _fallback_report(fallback, weights, chosen, fspec, alone, a)
    frame["_p"] = pred
    report = evaluate(frame, pred="_p", target="_y", weight="_w", slices=ev.slices,
                      horizon_col="_ahead")
    report["fit"] = {"end": fit_end, "rows": int(fit_rows.sum())}
    report["scored"] = {"start": score[0], "end": score[1], "rows": int(rows.sum())}
    if isinstance(model, SeriesBaselinePredictor):
        report["fallbacks"] = model.fallback_counts(Xs)
    if gave_way is not None:
        report["fallback"] = gave_way
    scored = pnl.loc[rows, [*fspec.keys, fspec.time]].reset_index(drop=True)
    scored["prediction"], scored["actual"] = pred, y[rows]
    return report, scored


def _fallback_report(fallback: dict[str, Any], weights: list[list[float]],
                     chosen: list[SliceWeight] | None, fspec: FeatureSpec,
                     alone: dict[str, Any], a: np.ndarray) -> dict[str, Any]:
    """What gave way, in the data's own values: the weights (and, where they were
    chosen, each slice's validation errors), the model alone's figures, the share of
    scored rows that were mixed (``a``: each scored row's model weight)."""
    by = fallback["by"]

    def named(values: list[float]) -> dict[str, Any]:
        out = {}
        for col, v in zip(by, values, strict=True):
            cats = fspec.categories.get(col)
            out[col] = cats[int(v)] if cats is not None else (int(v) if v == int(v) else v)
        return out

    if chosen is not None:
        slices = [{"slice": named(list(c.values)), "model_weight": c.model_weight,
                   "model": c.model_error, "baseline": c.baseline_error,
                   "mixed": c.mixed_error, "rows": c.rows} for c in chosen]
    else:
        slices = [{"slice": named(r[:-1]), "model_weight": r[-1]} for r in weights]
    return {"by": by, "to": fallback["baseline"]["name"], "blend": fallback["blend"],
            "chosen_on": "this window" if chosen is not None else "validation",
            "weights": weights, "slices": slices, "without_fallback": alone,
            "rows_mixed": int((a < 1).sum()), "rows": int(len(a))}


def validate_candidate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                       ) -> dict[str, Any]:
    """Fit on the training window, score the validation window (a model that cannot be
    fitted: ``report`` None and its ``error``)."""
    w = inputs["split.windows"]
    ev = EvaluationConfig(**params["evaluation"])
    spec = ModelSpec(**params["spec"])
    fallback = None
    if spec.fallback is not None:
        fallback = {"by": spec.fallback.by, "blend": spec.fallback.blend,
                    "margin_pct": spec.fallback.margin_pct,
                    "baseline": params["fallback_baseline"]}
    try:
        report, _ = _fit_and_score(ctx, inputs, spec, params["seed"], ev, w["train_end"],
                                   (w["validation_start"], w["validation_end"]), fallback)
    except ModelError as exc:
        return {"report": None, "metric": None, "error": fit_failure(exc)}
    report.pop("slices", None)
    return {"report": report, "metric": report["overall"][ev.metric], "error": None}


def select(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The candidate with the best validation metric (ties: the first listed); failed
    models are listed on the leaderboard with their error, never selected."""
    metric = params["metric"]
    names = params["names"]
    reports = {n: inputs[f"candidate:{n}.report"] for n in names
               if inputs[f"candidate:{n}.report"] is not None}
    failed = {n: inputs.get(f"candidate:{n}.error") or "no report" for n in names
              if n not in reports}
    if not reports:
        raise PipelineError("no model could be evaluated on validation: " + "; ".join(
            f"{n}: {e}" for n, e in failed.items()))
    board = compare(reports, metric, baselines=params["baselines"], higher=params.get("higher"),
                    failed=failed)
    cands = [r for r in board if not r["is_baseline"] and r.get("error") is None]
    best = cands[0]["model"] if cands else None
    # a searched candidate's recipe is its best trial's (``candidate:<name>.spec``)
    spec = inputs.get(f"candidate:{best}.spec") or \
        next((s for s in params["specs"] if s["name"] == best), None)
    # a classifier's decision threshold, fixed or chosen on validation (None otherwise)
    threshold = reports[best]["overall"].get("threshold") if best else None
    # the weights the selected recipe chose on validation, for the holdout and the bundle
    chosen = reports[best].get("fallback") if best else None
    fallback = None if chosen is None else {
        "by": chosen["by"], "blend": chosen["blend"], "weights": chosen["weights"],
        "baseline": next(b for b in params["baseline_specs"] if b["name"] == chosen["to"])}
    return {"selected": best, "spec": spec, "leaderboard": board, "threshold": threshold,
            "fallback": fallback}


def holdout(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fit on everything before the holdout, score the holdout (slices and weeks ahead);
    the scored rows are kept (``outputs``): monitoring's reference for prediction drift."""
    spec = params.get("spec") or inputs.get("select.spec")
    if spec is None:
        return {"report": None, "name": None, "outputs": None, "error": None}
    w = inputs["split.windows"]
    ev = EvaluationConfig(**params["evaluation"])
    try:
        report, scored = _fit_and_score(ctx, inputs, ModelSpec(**spec), params["seed"], ev,
                                        w["validation_end"],
                                        (w["holdout_start"], w["holdout_end"]),
                                        inputs.get("select.fallback"))  # holdout:selected only
    except ModelError as exc:
        return {"report": None, "name": spec["name"], "outputs": None, "error": fit_failure(exc)}
    return {"report": report, "name": spec["name"], "outputs": ctx.put_frame(scored),
            "error": None}


def gate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Apply the gate rules to the selected recipe's holdout report, against the baselines
    that could be evaluated on the holdout. When the selected recipe or the gate's
    baseline failed there, the gate does not pass and ``note`` says why; the best baseline
    evaluated is bundled (``bundle_baseline``), if any."""
    cfg, metric = GateConfig(**params["gate"]), params["metric"]
    baselines = {n: inputs[f"holdout:{n}.report"] for n in params["baselines"]
                 if inputs[f"holdout:{n}.report"] is not None}
    errors = {n: inputs.get(f"holdout:{n}.error") for n in params["baselines"]
              if n not in baselines}
    cand = inputs["holdout:selected.report"]
    sign = -1.0 if params.get("higher") else 1.0
    best = min(baselines, key=lambda n: (sign * baselines[n]["overall"][metric], n)) \
        if baselines else None
    if cfg.baseline in baselines:
        best = cfg.baseline
    best_spec = next((s for s in params["specs"] if s["name"] == best), None)
    out = {"passed": False, "report": None, "best_baseline": best,
           "best_baseline_spec": best_spec, "candidate": None, "note": None,
           "best_baseline_bundle": inputs.get(f"holdout:{best}.bundle") if best else None,
           "best_baseline_threshold": baselines[best]["overall"].get("threshold")
           if best else None}
    missing = cfg.baseline if cfg.baseline != "best" else None
    if cand is None and inputs.get("holdout:selected.error"):
        out["note"] = (f"the selected candidate {inputs['holdout:selected.name']} could "
                       f"not be evaluated on the holdout: {inputs['holdout:selected.error']}")
    elif cand is not None and (not baselines or missing in errors):
        out["note"] = "the gate's baseline could not be evaluated on the holdout: " + \
            "; ".join(f"{n}: {e}" for n, e in errors.items() if missing in (None, n))
    elif cand is not None:
        report = apply_gate(cand, baselines, cfg, metric=metric, higher=params.get("higher"))
        report["candidate"] = inputs["holdout:selected.name"]
        if cand.get("fallback"):  # what gave way, explained beside the verdict
            report["fallback"] = cand["fallback"]
        out.update(passed=bool(report["passed"]), report=report,
                   candidate=report["candidate"])
    out["failed"] = not out["passed"]
    out["bundle_baseline"] = out["failed"] and best is not None
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
    t = pnl[fspec.time]
    w = _weights(pnl, ev)[rows]
    model = fit_model(ModelSpec(**spec), X[rows], y[rows], w, seed=params["seed"],
                      keys=fspec.keys, times=t[rows])
    fallback = inputs.get("select.fallback")  # only bundle:selected takes it
    if fallback is not None:  # the weights chosen on validation, with their baseline refit
        base = fit_model(ModelSpec(**fallback["baseline"]), X[rows], y[rows], w,
                         seed=params["seed"], keys=fspec.keys, times=t[rows])
        model = BlendPredictor(model, base, by=fallback["by"], weights=fallback["weights"],
                               baseline_name=fallback["baseline"]["name"])
    trained_on = {"start": str(t[rows].min().date()), "end": str(t[rows].max().date()),
                  "rows": int(rows.sum()),
                  "note": "refit with the gated recipe on all data up to the snapshot's end"}
    digest = save_bundle(ctx.artifacts, model_name=params["model_name"], recipe=spec["name"],
                         kind=params["kind"], predictor=model, spec=fspec, history=pnl,
                         trained_on=trained_on, extra={"model_spec": spec})
    return {"digest": digest, "recipe": spec["name"], "kind": params["kind"],
            "trained_on": trained_on}
