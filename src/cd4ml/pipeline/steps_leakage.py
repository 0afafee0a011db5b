"""The ``leakage`` stage: warn of a model input that gives the answer away.

One stage per run, after ``split``, cached like any other: its key is the inputs it
reads and ``evaluation.leakage`` (changing the thresholds re-runs this stage only; the
models' stages do not read it). Each input not in ``evaluation.leakage.allow`` is checked
by :func:`cd4ml.evaluation.leakage.find_leaks`: a one-feature model fitted on the fit
rows and scored on the validation rows, and the identifier check.

- tabular tasks: the model's inputs as the table spec defines them; the fit rows are the
  training rows without the validation share, the validation rows that share.
- forecasts: the covariates and static columns, as the features read them for the row
  of date d (an ``observed`` covariate ``horizon`` periods earlier), against the target;
  the fit rows are the training periods, the validation rows the validation periods.
  The series keys and the time are not inputs of this check.

The findings (``Leak.to_dict()``) reach the run's outcome and its stored summary; a
finding is a warning, never a failure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cd4ml.config import LeakageConfig
from cd4ml.pipeline.checks import check_allowed

__all__ = ["tabular_leakage", "forecast_leakage"]


def tabular_leakage(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                    ) -> dict[str, Any]:
    """The leakage findings of a tabular task's inputs (see the module)."""
    from cd4ml.features.tabular import TabularSpec

    spec = TabularSpec.from_dict(inputs["table.spec"])
    roles = ctx.frame(inputs["split.roles"])["role"].astype(str).to_numpy()
    rows = np.isin(roles, ("train", "validation"))
    frame = ctx.frame(inputs["table.table"]).loc[rows, [*spec.names, spec.target]]
    return _check(frame, target=spec.target, task=params["task"], inputs=spec.names,
                  validation=roles[rows] == "validation", params=params)


def forecast_leakage(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                     ) -> dict[str, Any]:
    """The leakage findings of a forecast's covariates and static columns (see the
    module)."""
    from cd4ml.features.compute import FeatureSpec

    fspec = FeatureSpec.from_dict(inputs["features.spec"])
    w = inputs["split.windows"]
    pnl = ctx.frame(inputs["panel.panel"])
    t = pnl[fspec.time]
    rows = (t <= pd.Timestamp(w["validation_end"])).to_numpy()
    columns: dict[str, Any] = {c: pnl[c] for c in fspec.static}
    lagged = ctx.frame(inputs["features.features"])
    for c, mode in fspec.covariates.items():  # as the features read them for date d
        columns[c] = pnl[c] if mode == "known_ahead" else lagged[f"{c}_lag{fspec.horizon}"]
    frame = pd.DataFrame({c: v.to_numpy()[rows] for c, v in columns.items()})
    frame[fspec.target] = pd.to_numeric(pnl[fspec.target]).to_numpy()[rows]
    validation = (t >= pd.Timestamp(w["validation_start"])).to_numpy()[rows]
    return _check(frame, target=fspec.target, task="forecast", inputs=list(columns),
                  validation=validation, params=params)


def _check(frame: pd.DataFrame, *, target: str, task: str, inputs: list[str],
           validation: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """find_leaks on ``inputs`` but the allowed ones; what was checked, on which rows."""
    from cd4ml.evaluation.leakage import find_leaks

    cfg = LeakageConfig(**params["leakage"])
    check_allowed(cfg.allow, inputs)
    checked = [c for c in inputs if c not in cfg.allow]
    known = frame[target].notna().to_numpy()
    fit_rows, val_rows = int((~validation & known).sum()), int((validation & known).sum())
    leaks = []
    if checked and fit_rows and val_rows:  # without either, the model stages say why
        leaks = find_leaks(frame, target=target, task=task, columns=checked,
                           validation=validation, max_auc=cfg.max_auc, max_r2=cfg.max_r2,
                           seed=params["seed"])
    return {"findings": [leak.to_dict() for leak in leaks], "checked": checked,
            "allowed": list(cfg.allow), "fit_rows": fit_rows, "validation_rows": val_rows}
