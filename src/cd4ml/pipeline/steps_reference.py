"""The reference stage: what a registered version is later monitored against.

It summarises the training rows' inputs (a tabular model's request fields; a forecast's
covariates and static columns, which reach its features) and the holdout's outputs of the
recipe the gate chose (out-of-sample: that model was fitted before the holdout), and
stores both as one reference profile (:class:`cd4ml.monitoring.Reference`); the scored
holdout rows (outputs, labels, inputs) are kept beside it, and for a binary classifier a
calibrator is fitted on them (``monitoring.estimate``), for estimating performance without
labels. ``cd4ml run`` records the reference's digest in the version's lineage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["reference"]


def _chosen_outputs(inputs: dict[str, Any]) -> tuple[str | None, str | None]:
    """(recipe, outputs digest) of what the gate lets through: the selected candidate when
    it passed, the best baseline otherwise."""
    if inputs["gate.passed"]:
        return inputs.get("holdout:selected.name"), inputs.get("holdout:selected.outputs")
    best = inputs["gate.best_baseline"]
    return best, inputs.get(f"holdout:{best}.outputs")


def _tabular_features(ctx: Any, inputs: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, str]]:
    from cd4ml.features.tabular import TabularSpec

    spec = TabularSpec.from_dict(inputs["table.spec"])
    df = ctx.frame(inputs["table.table"])
    roles = ctx.frame(inputs["split.roles"])["role"].astype(str).to_numpy()
    rows = np.isin(roles, ("train", "validation"))
    kinds = {c.name: ("categorical" if c.categorical or c.type in ("string", "bool")
                      else "numeric") for c in spec.inputs}
    return df.loc[rows, spec.names].reset_index(drop=True), kinds


def _forecast_features(ctx: Any, inputs: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, str]]:
    from cd4ml.features import FeatureSpec
    from cd4ml.monitoring import infer_kinds

    fspec = FeatureSpec.from_dict(inputs["features.spec"])
    pnl = ctx.frame(inputs["panel.panel"])
    y = pd.to_numeric(pnl[fspec.target])
    cols = [c for c in [*fspec.static, *fspec.covariates] if c in pnl.columns]
    frame = pnl.loc[y.notna().to_numpy(), cols].reset_index(drop=True)
    return frame, infer_kinds(frame)


def _calibrator(scored: pd.DataFrame, kinds: dict[str, str]) -> Any:
    """P(label | score, inputs) on the holdout (``monitoring.estimate``)."""
    from cd4ml.monitoring.estimate import Calibrator

    inputs = scored[[c for c in scored.columns if c.startswith("input.")]]
    inputs.columns = [c.removeprefix("input.") for c in inputs.columns]
    return Calibrator.fit(scored["score"], scored["actual"], inputs, kinds)


def _threshold(inputs: dict[str, Any]) -> float:
    t = (inputs.get("select.threshold") if inputs["gate.passed"]
         else inputs.get("gate.best_baseline_threshold"))
    return 0.5 if t is None else float(t)


def reference(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Build and store the reference profile of the version this run would register."""
    from cd4ml.monitoring import Reference

    recipe, outputs = _chosen_outputs(inputs)
    if params["task"] == "forecast":
        features, kinds = _forecast_features(ctx, inputs)
    else:
        features, kinds = _tabular_features(ctx, inputs)
    scored = ctx.frame(outputs) if outputs else None
    out_cols = (scored[[c for c in scored.columns
                        if c != "actual" and not c.startswith("input.")
                        and pd.api.types.is_float_dtype(scored[c])]]
                if scored is not None else None)
    meta: dict[str, Any] = {"task": params["task"], "recipe": recipe, "holdout": outputs,
                            "holdout_rows": 0 if scored is None else len(scored)}
    if scored is not None and "score" in scored.columns:  # a binary classifier
        meta["calibrator"] = _calibrator(scored, kinds).to_dict()
        meta["decision_threshold"] = _threshold(inputs)
    if params["task"] != "forecast" and len(features.columns):
        from cd4ml.monitoring.multivariate import Reconstruction

        meta["reconstruction"] = Reconstruction.fit(features, kinds).to_dict()
    ref = Reference.from_frame(features, kinds=kinds, outputs=out_cols, **meta)
    digest = ctx.artifacts.put_bytes(ref.to_bytes())
    return {"reference": digest, "rows": ref.rows, "columns": list(ref.features),
            "outputs": list(ref.outputs), "holdout": outputs}
