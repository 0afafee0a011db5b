"""Where the model fails, and whether the world changed under it: residuals as a function
of each input, and the concept-drift verdict.

**Residuals by input** (:func:`residuals_by_input`): the labelled rows of a window binned
by each input — a numeric input on the deciles of its training values (the reference's
summary; values beyond them fall in the end bins), a categorical one by its most
frequent categories in the window and ``(other)`` — and per bin the rows, the mean
residual (actual minus prediction: for a binary classifier, label minus the
positive-class probability, so a bin's mean is its calibration error) and the error (the
mean absolute residual; for a binary classifier the Brier score of the bin). The bins
whose error is furthest above the window's are listed first in ``worst``: that is where
the model fails.

**Concept drift** (:func:`concept_verdict`): the inputs look as in training, yet the
model does worse — P(label | inputs) has changed. With labels, quality worse than the
holdout's by at least ``min_effect`` (relative) while no input column drifted is
"suspected"; the same loss with drifted inputs is "inputs drifted" (covariate shift may
explain it). A binary classifier's estimate without labels assumes no concept drift, so
realized quality below the estimate by ``min_effect`` is a second sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["residuals_by_input", "concept_verdict", "MIN_BIN_ROWS", "TOP_CATEGORIES"]

#: a bin with fewer labelled rows is shown, not ranked among the worst
MIN_BIN_ROWS = 30
#: categories shown per categorical input (the rest as ``(other)``)
TOP_CATEGORIES = 10


def _edges(summary: Any) -> np.ndarray | None:
    """The reference's deciles of a numeric input (unique, at least two)."""
    if summary is None or summary.n == 0:
        return None
    cum = np.cumsum(summary.counts) / summary.n
    qs = [summary.values[min(np.searchsorted(cum, q), len(summary.values) - 1)]
          for q in np.linspace(0.1, 0.9, 9)]
    edges = np.unique(np.asarray(qs, dtype=np.float64))
    return edges if len(edges) else None


def _bins(values: pd.Series, kind: str, summary: Any) -> tuple[np.ndarray, list[str]]:
    """Each row's bin number (-1: missing) and the bins' labels."""
    if kind == "numeric":
        x = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
        edges = _edges(summary)
        if edges is None:
            return np.where(np.isnan(x), -1, 0), ["all"]
        code = np.searchsorted(edges, x, side="right")  # 0 .. len(edges)
        code[np.isnan(x)] = -1
        bounds = [-np.inf, *edges.tolist(), np.inf]
        labels = [f"[{_num(bounds[i])}, {_num(bounds[i + 1])})" for i in range(len(edges) + 1)]
        return code, labels
    text = values.astype(object).where(values.notna(), None)
    keys = text.map(lambda v: None if v is None else _label(v))
    top = keys.value_counts(dropna=True).index[:TOP_CATEGORIES].tolist()
    pos = {k: i for i, k in enumerate(top)}
    other = len(top)
    code = np.array([-1 if k is None else pos.get(k, other) for k in keys], dtype=np.int64)
    labels = [*top, "(other)"]
    return code, labels


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _num(v: float) -> str:
    return "-inf" if v == -np.inf else "inf" if v == np.inf else f"{v:g}"


def residuals_by_input(frame: pd.DataFrame, actual: Any, predicted: Any, *,
                       kinds: Mapping[str, str], summaries: Mapping[str, Any] | None = None,
                       binary: bool = False, columns: Sequence[str] | None = None,
                       ) -> dict[str, Any]:
    """Per input of ``frame`` (``columns``, default every one ``kinds`` names): its bins
    with rows, mean residual and error, and ``worst`` (bin labels, furthest above the
    window's error first, bins of at least :data:`MIN_BIN_ROWS` rows) and ``excess``, how
    far the worst bin's error is above the window's (0 if none is). ``binary``: the
    prediction is a positive-class probability and the error per bin is its Brier score;
    otherwise the mean absolute residual."""
    y = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    r = y - p
    err = r ** 2 if binary else np.abs(r)
    ok = np.isfinite(r)
    overall = float(err[ok].mean()) if ok.any() else None
    out: dict[str, Any] = {"rows": int(ok.sum()), "error": overall,
                           "error_name": "brier" if binary else "mae", "inputs": {}}
    for c in columns if columns is not None else [c for c in kinds if c in frame.columns]:
        if c not in frame.columns:
            continue
        code, labels = _bins(frame[c], kinds.get(c, "categorical"),
                             (summaries or {}).get(c))
        bins = []
        for i, lab in enumerate(labels):
            at = (code == i) & ok
            n = int(at.sum())
            bins.append({"bin": lab, "rows": n,
                         "mean_residual": float(r[at].mean()) if n else None,
                         "error": float(err[at].mean()) if n else None})
        missing = (code == -1) & ok
        if missing.any():
            bins.append({"bin": "(missing)", "rows": int(missing.sum()),
                         "mean_residual": float(r[missing].mean()),
                         "error": float(err[missing].mean())})
        ranked = sorted((b for b in bins if b["rows"] >= MIN_BIN_ROWS and b["error"] is not None
                         and overall is not None and b["error"] > overall),
                        key=lambda b: -b["error"])
        out["inputs"][c] = {"kind": kinds.get(c, "categorical"), "bins": bins,
                            "worst": [b["bin"] for b in ranked[:3]],
                            "excess": ranked[0]["error"] - overall if ranked else 0.0}
    return out


def concept_verdict(*, degradation: float | None, drifted_inputs: int | None,
                    estimated_gap: float | None = None,
                    min_effect: float = 0.05) -> dict[str, Any]:
    """Whether quality fell while the inputs stayed (``degradation``: relative, positive
    worse, None without labels; ``drifted_inputs``: drifted input columns, None where
    inputs are not judged; ``estimated_gap``: realized quality below the estimate,
    relative, positive worse)."""
    if degradation is None:
        return {"state": "not judged", "drifted": False,
                "message": "no labelled rows (or no holdout figure) to judge quality on"}
    worse = degradation >= min_effect
    gap = estimated_gap is not None and estimated_gap >= min_effect
    doc: dict[str, Any] = {"degradation": degradation, "estimated_gap": estimated_gap,
                           "drifted_inputs": drifted_inputs, "min_effect": min_effect}
    if not worse and not gap:
        return {**doc, "state": "ok", "drifted": False,
                "message": f"quality within {min_effect:.0%} of the holdout"}
    if drifted_inputs:
        return {**doc, "state": "inputs drifted", "drifted": False, "message": (
            f"quality {degradation:.1%} worse than the holdout with {drifted_inputs} input "
            f"column(s) drifted: the shift of the inputs may explain it")}
    why = []
    if worse:
        why.append(f"quality {degradation:.1%} worse than the holdout")
    if gap:
        why.append(f"realized {estimated_gap:.1%} below the estimate without labels")
    stable = "with no input column drifted" if drifted_inputs == 0 else \
        "(inputs not judged)"
    return {**doc, "state": "suspected", "drifted": True,
            "message": f"{'; '.join(why)} {stable}: the relation between inputs and "
                       f"label may have changed (concept drift)"}
