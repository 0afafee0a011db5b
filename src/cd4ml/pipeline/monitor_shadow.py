"""Live and shadow answers paired per request: how often the shadow agrees, and, once
labels come, which of the two is right more often.

A shadow version answers a copy of each request off the request path; the log keeps
its answer with role ``shadow`` and the live request's id (:mod:`cd4ml.serving.router`).
:func:`shadow_report` joins the two on (request id, row):

- a **label** output (classifiers): the share of rows where both give the same label;
  with actuals, each one's accuracy and an exact McNemar test on the rows where only
  one of them is right (the binomial test of the discordant pairs, SciPy's
  ``binomtest``);
- a **number** (forecasts, regressors): the mean absolute difference, the share of rows
  within 1 % of each other; with actuals, each one's mean absolute error and a paired
  t-test of the absolute errors (SciPy's ``ttest_rel``), with the mean difference's
  95 % interval.

Rows whose live answer was not logged (the log dropped it, or it is outside the window)
are counted as ``unpaired``, not guessed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml import predlog

__all__ = ["shadow_report", "pair"]


def pair(df: pd.DataFrame, shadow_version: int) -> tuple[pd.DataFrame, int]:
    """Live rows and the shadow's rows of the same (request id, row), side by side
    (``live_*`` / ``shadow_*`` columns), and the number of shadow rows left unpaired."""
    shadow = df[(df["arm"] == "shadow") & (df["version"] == shadow_version)]
    live = df[df["arm"] != "shadow"]
    keys = ["request_id", "row"]
    merged = shadow.merge(live, on=keys, suffixes=("_shadow", "_live"))
    return merged, len(shadow) - len(merged)


def _f(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def shadow_report(directory: str | Path, *, model: str, shadow_version: int,
                  since: float | None = None, until: float | None = None) -> dict[str, Any]:
    """The pairing of ``shadow_version``'s answers with the live ones (module text)."""
    from scipy import stats

    df = predlog.predictions(directory, model=model, since=since, until=until,
                             with_features=False)
    doc: dict[str, Any] = {"model": model, "shadow_version": shadow_version,
                           "since": since, "until": until}
    if df.empty:
        return {**doc, "pairs": 0, "unpaired": 0, "note": "nothing logged in the window"}
    merged, unpaired = pair(df, shadow_version)
    doc.update(pairs=int(len(merged)), unpaired=int(unpaired),
               live_versions=sorted(int(v) for v in merged["version_live"].unique()))
    if merged.empty:
        return {**doc, "note": f"no answer of v{shadow_version} as a shadow in the window"}
    actual = merged["actual_live"].combine_first(merged["actual_shadow"])
    labelled = actual.notna()
    doc["labelled"] = int(labelled.sum())
    if "label_live" in merged:
        a, b = merged["label_live"].astype(str), merged["label_shadow"].astype(str)
        doc["output"] = "label"
        doc["agreement"] = float((a == b).mean())
        if labelled.any():
            y = actual[labelled].astype(str)
            # actuals of a classifier may come as numbers (1.0) for labels "1"
            y = y.str.replace(r"\.0$", "", regex=True)
            ok_live = (a[labelled].to_numpy() == y.to_numpy())
            ok_shadow = (b[labelled].to_numpy() == y.to_numpy())
            only_live = int((ok_live & ~ok_shadow).sum())
            only_shadow = int((ok_shadow & ~ok_live).sum())
            test = stats.binomtest(only_shadow, only_live + only_shadow) \
                if only_live + only_shadow else None
            doc["quality"] = {"live_accuracy": float(ok_live.mean()),
                              "shadow_accuracy": float(ok_shadow.mean()),
                              "only_live_right": only_live, "only_shadow_right": only_shadow,
                              "p_value": None if test is None else float(test.pvalue),
                              "test": "exact McNemar (binomial on discordant pairs)"}
        return doc
    a = merged["prediction_live"].to_numpy(float)
    b = merged["prediction_shadow"].to_numpy(float)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), 1e-12)
    doc["output"] = "number"
    doc["agreement"] = {"mean_abs_difference": float(diff.mean()),
                        "within_1_percent": float((diff <= 0.01 * scale).mean())}
    if labelled.sum() >= 2:
        y = actual[labelled].to_numpy(float)
        e_live = np.abs(a[labelled.to_numpy()] - y)
        e_shadow = np.abs(b[labelled.to_numpy()] - y)
        d = e_shadow - e_live
        test = stats.ttest_rel(e_shadow, e_live)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) \
            if len(d) > 1 else float("nan")
        doc["quality"] = {"live_mae": float(e_live.mean()), "shadow_mae": float(e_shadow.mean()),
                          "mae_difference": float(d.mean()),
                          "ci95": [_f(d.mean() - half), _f(d.mean() + half)],
                          "p_value": _f(test.pvalue), "test": "paired t-test of absolute errors"}
    return doc
