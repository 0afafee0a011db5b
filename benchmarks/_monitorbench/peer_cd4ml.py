"""cd4ml's drift report on one frame pair (the cd4ml venv), against its monitoring API:

    from cd4ml.monitoring import Reference, compare
    ref = Reference.from_frame(reference_df)       # the reference profile, built here
    rep = compare(ref, current_df)
    rep.to_dict() -> {"columns": {name: {"method", "statistic", "p_value", "threshold",
                                         "drifted", ...}},
                      "share_drifted": float, "dataset_drifted": bool}

Timed: ``Reference.from_frame`` (the profile is part of cd4ml's cost, as a peer's reference
is of its) + ``compare`` + ``to_dict``; not timed: the imports, SciPy's included (cd4ml
imports it on first use, ~0.5 s and ~60 MB here; the peers at their own import). The
columns the benchmark calls categorical reach cd4ml as pandas ``category`` (cast after
loading, before timing): that dtype is how a frame says "categorical" without a tool's own
column mapping. Until ``cd4ml.monitoring``
has that API this script answers with the ImportError and exits 2.

    python peer_cd4ml.py JOB.json     # prints one line: @@{...}
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _peer import Meter, emit, job, load, measured, num, preload


def _clean(v: Any) -> Any:
    """JSON-safe: NaN and infinities to None, numpy scalars to Python, the rest as text."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if v is None or isinstance(v, (bool, str)):
        return v
    if hasattr(v, "item"):  # numpy scalar
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return num(v) if isinstance(v, float) else v
    return str(v)


def drift(j: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    from importlib.metadata import version

    from cd4ml.monitoring import Reference, compare

    import_s = preload(t0)

    ref, cur = load(j)
    for c in j["categorical"]:
        ref[c] = ref[c].astype("category")
        cur[c] = cur[c].astype("category")
    with Meter() as m:
        reference = Reference.from_frame(ref)
        doc = compare(reference, cur).to_dict()
    columns = _clean(doc["columns"])
    return {"version": version("cd4ml"), **measured(m), "import_s": import_s,
            "rows": {"reference": len(ref), "current": len(cur)}, "columns": columns,
            "share_drifted": num(doc.get("share_drifted")),
            "dataset_drifted": doc.get("dataset_drifted")}


def cbpe(j: dict[str, Any]) -> dict[str, Any]:
    """ROC AUC estimated without labels per chunk: the calibrator fitted on the reference
    (the holdout year: scores, labels, inputs), the estimate on each chunk of the
    analysis rows, against the realized AUC (what cd4ml's reference stage and
    ``cd4ml monitor`` do, ``cd4ml.monitoring.estimate``)."""
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    from importlib.metadata import version

    from sklearn.metrics import roc_auc_score

    from cd4ml.monitoring.estimate import Calibrator, expected_roc_auc

    import_s = preload(t0)
    x = j["extra"]
    inputs = [*j["numerical"], *j["categorical"]]
    cols = [x["y_pred_proba"], x["y_true"], *inputs]
    ref = pd.read_parquet(j["reference"], columns=cols)
    cur = pd.read_parquet(j["current"], columns=cols)
    kinds = {c: "categorical" for c in j["categorical"]}
    size = int(x["chunk_size"])
    with Meter() as m:
        cal = Calibrator.fit(ref[x["y_pred_proba"]], ref[x["y_true"]], ref[inputs], kinds)
        score = cur[x["y_pred_proba"]].to_numpy(np.float64)
        p = cal.predict(score, cur[inputs])
        est = [expected_roc_auc(score[i:i + size], p[i:i + size])
               for i in range(0, len(cur), size)]
    y = cur[x["y_true"]].to_numpy()
    chunks = []
    for k, i in enumerate(range(0, len(cur), size)):
        ys, ss = y[i:i + size], score[i:i + size]
        real = roc_auc_score(ys, ss) if len(np.unique(ys)) == 2 else None
        chunks.append({"start": i, "end": min(i + size, len(cur)) - 1, "rows": len(ys),
                       "estimated": num(est[k]), "realized": num(real), "alert": False})
    errs = [abs(c["estimated"] - c["realized"]) for c in chunks
            if c["estimated"] is not None and c["realized"] is not None]
    return {"version": version("cd4ml"), **measured(m), "import_s": import_s,
            "rows": {"reference": len(ref), "current": len(cur)}, "metric": "roc_auc",
            "chunks": chunks, "max_abs_error": max(errs) if errs else None,
            "mean_abs_error": sum(errs) / len(errs) if errs else None, "alerts": 0}


def main() -> int:
    j = job()
    head = {"tool": "cd4ml", "case": j.get("name"), "size": j.get("size"), "task": j.get("task")}
    try:
        doc = drift(j) if j["task"] == "drift" else cbpe(j)
    except ImportError as exc:
        emit({**head, "error": f"ImportError: {exc} (the benchmark is written against "
                               f"cd4ml.monitoring's Reference.from_frame, compare and "
                               f"to_dict, which have not landed yet)", "missing_api": True})
        return 2
    except Exception as exc:  # noqa: BLE001 - a refusal is a result of the benchmark
        import traceback

        emit({**head, "error": f"{type(exc).__name__}: {exc}"[:2000],
              "traceback": traceback.format_exc()[-4000:]})
        return 1
    emit({**head, **doc})
    return 0


if __name__ == "__main__":
    sys.exit(main())
