"""Training-serving skew: the features the training path computes from a logged request,
against the vector the server gave the model.

One feature code path serves training and serving, so any difference is a bug (a
server built from other code, a transform that changed under a version, a client
sending what the log did not keep). The check recomputes the features of logged rows
with the version's own transform (``TabularTransform.matrix``, what training calls) and
compares them with the logged vectors, float32 for float32 (NaN equals NaN), per feature,
with examples of each difference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import Cd4mlError

__all__ = ["tabular_skew", "training_path", "compare_vectors", "EXAMPLES"]

#: Differences shown per feature.
EXAMPLES = 5


def training_path(transform: Any, inputs: pd.DataFrame) -> tuple[np.ndarray, str | None]:
    """The features the training path computes from logged inputs (float32, rows x
    ``transform.feature_names``), or NaN and why it refuses them."""
    names = list(transform.feature_names)
    try:
        return np.asarray(transform.matrix(inputs), dtype=np.float32), None
    except Cd4mlError as exc:
        return np.full((len(inputs), len(names)), np.nan, dtype=np.float32), str(exc)


def tabular_skew(transform: Any, inputs: pd.DataFrame, served: pd.DataFrame,
                 request_ids: Any, rows: Any) -> dict[str, Any]:
    """Per feature: how many logged rows the training path disagrees with, and examples.

    ``inputs`` holds the logged request fields (input names as columns), ``served`` the
    logged feature vectors (feature names as columns), both row-aligned.
    """
    again, refused = training_path(transform, inputs)
    return compare_vectors(list(transform.feature_names), again, refused, inputs, served,
                           request_ids, rows)


def compare_vectors(names: list[str], again: np.ndarray, refused: str | None,
                    inputs: pd.DataFrame, served: pd.DataFrame, request_ids: Any,
                    rows: Any) -> dict[str, Any]:
    """:func:`tabular_skew` on the training path's vectors already computed (``again``,
    row-aligned with ``served``; ``refused``: why the training path refused the inputs)."""
    n = len(inputs)
    if n == 0:
        return {"rows": 0, "state": "insufficient", "share": None, "features": {},
                "message": "no logged rows with features in the window"}
    absent = [c for c in names if c not in served.columns]
    if absent:
        return {"rows": n, "state": "not comparable", "share": None, "features": {},
                "message": f"the log holds no served vector for {', '.join(absent)}"}
    if refused is not None:
        return {"rows": n, "state": "not comparable", "share": None, "features": {},
                "message": f"the training path refuses logged inputs: {refused}"}
    got = served[names].to_numpy(dtype=np.float32)
    differ = ~((again == got) | (np.isnan(again) & np.isnan(got)))
    ids, rws = np.asarray(request_ids, dtype=object), np.asarray(rows)
    features: dict[str, Any] = {}
    for j, name in enumerate(names):
        bad = np.flatnonzero(differ[:, j])
        features[name] = {"mismatches": int(len(bad)), "examples": [
            {"request_id": str(ids[i]), "row": int(rws[i]), "served": _f(got[i, j]),
             "training_path": _f(again[i, j]), "input": _plain(inputs.iloc[i][name])
             if name in inputs.columns else None}
            for i in bad[:EXAMPLES]]}
    skewed = differ.any(axis=1)
    share = float(skewed.mean())
    return {"rows": n, "state": "skewed" if skewed.any() else "ok", "share": share,
            "features": features, "skewed_features": [k for k, v in features.items()
                                                      if v["mismatches"]],
            "message": "" if not skewed.any() else (
                f"{int(skewed.sum()):,} of {n:,} logged rows were served a vector the "
                f"training path does not compute: a bug between training and serving")}


def _f(v: Any) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return None if v is pd.NA else v
