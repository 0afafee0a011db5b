"""NannyML 0.13.1 on one frame pair (its own venv): univariate drift, or CBPE.

Drift (``task: drift``): ``UnivariateDriftCalculator`` with the benchmark's column types
(``treat_as_numerical`` / ``treat_as_categorical``), ``chunk_size=10000`` and NannyML's
defaults otherwise (Jensen-Shannon for both kinds; the alert threshold is the reference
chunks' mean + 3 std). Timed: ``fit(reference)`` + ``calculate(current)``. Reported per
column: alerting chunks out of all, the largest chunk value, the threshold; ``drifted`` is
"at least one chunk alerts" (what a monitor built on it would fire on); a column whose
every chunk scored NaN (Walmart's MarkDowns: all missing in the reference) is listed as
unscored, since NannyML says nothing of it. The ACS job adds
the model's score (``prediction``) as a further continuous column, as NannyML's own
examples monitor it.

CBPE (``task: cbpe``): ``CBPE(metrics=["roc_auc"], problem_type="classification_binary",
chunk_size=10000)`` fitted on the labelled reference (the model's holdout) and run on the
analysis frame, which carries the labels too, so NannyML reports the realized AUC of each
chunk beside its estimate; the same chunks' AUC from scikit-learn is kept as a check.

    python peer_nannyml.py JOB.json     # prints one line: @@{...}
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from _peer import Meter, load, measured, num, preload, run


def _version() -> str:
    from importlib.metadata import version

    return version("nannyml")


def drift(j: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    import nannyml as nml

    import_s = preload(t0)

    pred = j["extra"].get("prediction")
    ref, cur = load(j, [pred] if pred else None)
    cols = [*j["numerical"], *j["categorical"], *([pred] if pred else [])]
    with Meter() as m:
        calc = nml.UnivariateDriftCalculator(
            column_names=cols, treat_as_numerical=[*j["numerical"], *([pred] if pred else [])],
            treat_as_categorical=j["categorical"], chunk_size=j["extra"]["chunk_size"])
        calc.fit(ref)
        result = calc.calculate(cur)
    df = result.filter(period="analysis").to_df()
    columns: dict[str, Any] = {}
    for col in cols:
        methods = sorted({k[1] for k in df.columns if k[0] == col})
        for method in methods:
            values = df[(col, method, "value")].astype(float)
            alerts = df[(col, method, "alert")].astype(bool)
            upper = df[(col, method, "upper_threshold")]
            columns[col] = {
                "method": method, "role": "prediction" if col == pred else "feature",
                "chunks": int(len(df)), "alerts": int(alerts.sum()),
                "statistic": num(values.max()), "statistic_mean": num(values.mean()),
                "unscored_chunks": int(values.isna().sum()),
                "p_value": None, "threshold": num(upper.dropna().iloc[0]) if upper.notna().any()
                else None, "drifted": bool(alerts.any())}
    features = [c for c, v in columns.items() if v["role"] == "feature"]
    alerting = [c for c in features if columns[c]["drifted"]]
    return {"version": _version(), **measured(m), "import_s": import_s,
            "rows": {"reference": len(ref), "current": len(cur)}, "columns": columns,
            "chunks": int(len(df)), "share_drifted": len(alerting) / max(len(features), 1),
            "alerting_features": len(alerting), "features": len(features),
            "unscored_features": [c for c in features if columns[c]["statistic"] is None],
            "prediction_alerts": columns[pred]["alerts"] if pred else None}


def cbpe(j: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    import nannyml as nml
    from sklearn.metrics import roc_auc_score

    import_s = preload(t0)

    x = j["extra"]
    cols = [x["y_pred_proba"], x["y_pred"], x["y_true"]]
    ref = pd.read_parquet(j["reference"], columns=cols)
    cur = pd.read_parquet(j["current"], columns=cols)
    with Meter() as m:
        est = nml.CBPE(y_pred_proba=x["y_pred_proba"], y_pred=x["y_pred"], y_true=x["y_true"],
                       metrics=["roc_auc"], problem_type="classification_binary",
                       chunk_size=x["chunk_size"])
        est.fit(ref)
        result = est.estimate(cur)
    df = result.filter(period="analysis").to_df()
    chunks = []
    for _, r in df.iterrows():
        a, b = int(r[("chunk", "start_index")]), int(r[("chunk", "end_index")])
        part = cur.iloc[a:b + 1]
        ys = part[x["y_true"]]
        chunks.append({
            "start": a, "end": b, "rows": b - a + 1,
            "estimated": num(r[("roc_auc", "value")]),
            "realized": num(r[("roc_auc", "realized")]),
            "realized_sklearn": num(roc_auc_score(ys, part[x["y_pred_proba"]]))
            if ys.nunique() == 2 else None,
            "lower": num(r[("roc_auc", "lower_confidence_boundary")]),
            "upper": num(r[("roc_auc", "upper_confidence_boundary")]),
            "alert": bool(r[("roc_auc", "alert")])})
    errs = [abs(c["estimated"] - c["realized"]) for c in chunks
            if c["estimated"] is not None and c["realized"] is not None]
    return {"version": _version(), **measured(m), "import_s": import_s,
            "rows": {"reference": len(ref), "current": len(cur)}, "metric": "roc_auc",
            "chunks": chunks, "max_abs_error": max(errs) if errs else None,
            "mean_abs_error": sum(errs) / len(errs) if errs else None,
            "alerts": sum(c["alert"] for c in chunks)}


if __name__ == "__main__":
    run("nannyml", lambda j: cbpe(j) if j["task"] == "cbpe" else drift(j))
