"""The holdout report of a classifier: metrics, confusion matrix, calibration, slices, groups.

``y`` holds class indices ``0..k-1`` (``classes[i]`` names index ``i``) and ``proba`` the
predicted probabilities, shape ``(n, k)``. Binary: the positive class is ``classes[1]``
and a row is predicted positive when its probability is ``>= threshold``; multiclass:
the most probable class (the first of equal ones). The confusion matrix has a row per
true class and a column per predicted class (as scikit-learn's). Metric definitions:
:mod:`cd4ml.evaluation.tabular_metrics`. A metric undefined on the rows is None and
``undefined`` says why.

>>> y = np.array([0, 0, 1, 1, 1]); p1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
>>> rep = classification_report(y, np.c_[1 - p1, p1], classes=["no", "yes"], bootstrap=0)
>>> o = rep["overall"]
>>> o["roc_auc"], o["accuracy"], o["precision"], o["recall"], o["threshold"]
(0.8333333333333334, 0.6, 0.6666666666666666, 0.6666666666666666, 0.5)
>>> rep["confusion_matrix"]
{'labels': ['no', 'yes'], 'matrix': [[1, 1], [1, 2]]}
>>> choose_threshold(y, p1)  # 0.25 and 0.7 both get 4 of 5 right; 0.7 is nearer 0.5
0.7
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.evaluation.fairness import group_reports
from cd4ml.evaluation.report import _jsonable
from cd4ml.evaluation.tables import as_float, frame_for, metric_rows, slice_table
from cd4ml.evaluation.tabular_metrics import (
    CLASSIFICATION_METRICS, ClassificationMetrics, calibration_terms,
)

__all__ = ["classification_report", "choose_threshold", "class_indices", "probabilities"]


def class_indices(y: Any, k: int, name: str = "y") -> np.ndarray:
    """``y`` as int64 class indices in ``0..k-1``; anything else raises ValueError."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array of class indices, got shape "
                         f"{arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold class indices 0..{k - 1}, got {arr.dtype} values "
                         f"such as {arr[0].item()!r}; map the labels to their index in classes")
    whole = np.isfinite(arr) & (arr == np.round(arr)) if arr.dtype.kind == "f" else None
    if whole is not None and not whole.all():
        bad = arr[~whole][0].item()
        raise ValueError(f"{name} holds {bad!r}; class indices are whole numbers 0..{k - 1}")
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= k)
    if bad.any():
        raise ValueError(f"{name} holds {out[bad][0]} ({int(bad.sum()):,} rows); class "
                         f"indices must be in 0..{k - 1} (one per class)")
    return out


def probabilities(proba: Any, n: int, k: int) -> np.ndarray:
    """``proba`` checked: shape ``(n, k)``, finite, in [0, 1], each row summing to 1."""
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (n, k):
        raise ValueError(f"proba has shape {p.shape}, expected ({n}, {k}): one row per row "
                         "of y, one column per class")
    if not np.isfinite(p).all():
        raise ValueError(f"proba has {int((~np.isfinite(p)).sum()):,} NaN or infinite values")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"proba holds {float(p.min() if p.min() < 0 else p.max())!r}; "
                         "probabilities are in [0, 1]")
    off = np.abs(p.sum(axis=1) - 1) > 1e-6
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"proba row {i} sums to {float(p[i].sum())!r} "
                         f"({int(off.sum()):,} rows do not sum to 1); pass probabilities of "
                         "every class")
    return p


def choose_threshold(y: Any, p1: Any) -> float:
    """The decision threshold in (0, 1) with the highest accuracy of ``p1 >= t`` on these rows.

    Candidates lie midway between consecutive distinct probabilities (and midway between
    the smallest and 0, the largest and 1), so each labels the rows differently and is
    not itself a probability of a row. Ties: the candidate nearest 0.5, then the lower.
    """
    y = class_indices(y, 2)
    p = np.asarray(p1, dtype=np.float64)
    if p.shape != y.shape or not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError(f"p1 must hold {y.size:,} finite probabilities in [0, 1]")
    u, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=u.size)
    neg = np.bincount(inverse, minlength=u.size) - pos
    # candidate j labels positive the values u[j:]; j = len(u): none
    right = np.concatenate([[0.0], np.cumsum(neg)]) + np.concatenate(
        [np.cumsum(pos[::-1])[::-1], [0.0]])
    cand = np.concatenate([[u[0] / 2], (u[:-1] + u[1:]) / 2, [(u[-1] + 1) / 2]])
    usable = (cand > 0) & (cand < 1)
    usable[0] &= u[0] > 0
    usable[-1] &= u[-1] < 1
    best = right[usable].max()
    ties = cand[usable & (right == best)]
    order = np.lexsort((ties, np.abs(ties - 0.5)))
    return float(ties[order[0]])


def classification_report(y: Any, proba: Any, *, classes: Sequence[Any],
                          threshold: float | None = None, frame: pd.DataFrame | None = None,
                          slices: Sequence[str] = (), protected: Sequence[str] = (),
                          min_group_size: int = 100, bootstrap: int = 1000, seed: int = 0,
                          bins: int = 10, metric: str = "roc_auc") -> dict[str, Any]:
    """The JSON-able report of a classifier on scored rows; see the module.

    ``threshold`` (binary only; None: 0.5) is the decision threshold the labels, the
    confusion matrix and the group rates use. ``frame`` holds the rows' columns for
    ``slices`` (metrics per value) and ``protected`` (:func:`group_report` per column,
    gaps with ``bootstrap`` resamples seeded by ``seed``). ``bins``: calibration bins.
    """
    classes = [_jsonable(c) for c in classes]
    k = len(classes)
    if k < 2 or len(set(map(repr, classes))) != k:
        raise ValueError(f"classes = {classes}: need at least 2 distinct classes")
    if metric not in CLASSIFICATION_METRICS:
        raise ValueError(f"metric == {metric!r}, must be one of {list(CLASSIFICATION_METRICS)}")
    if not (isinstance(bins, int) and bins >= 2):
        raise ValueError(f"bins == {bins!r}, must be an integer >= 2")
    y = class_indices(y, k)
    p = probabilities(proba, y.size, k)
    if k == 2:
        threshold = 0.5 if threshold is None else float(threshold)
        if not 0 < threshold < 1:
            raise ValueError(f"threshold == {threshold!r}, must be in (0, 1)")
        labels = (p[:, 1] >= threshold).astype(np.int64)
    else:
        if threshold is not None:
            raise ValueError(f"threshold == {threshold!r}: a decision threshold applies to "
                             f"binary classification only; these rows have {k} classes")
        labels = p.argmax(axis=1)
    for what, columns in (("slices", slices), ("protected", protected)):
        frame_for(frame, columns, y.size, what=what)

    def make(codes: np.ndarray, G: int) -> ClassificationMetrics:
        return ClassificationMetrics(y, p, labels, codes, G, bins=bins)

    names = list(CLASSIFICATION_METRICS)
    point = make(np.zeros(y.size, dtype=np.int64), 1).point(names)
    (overall,) = metric_rows(point, names, 1)
    overall = {**{m: overall[m] for m in names}, "n": int(y.size),
               "weight_sum": float(y.size), "threshold": threshold,
               "undefined": overall["undefined"]}
    cm = np.bincount(y * k + labels, minlength=k * k).reshape(k, k)
    report: dict[str, Any] = {
        "task": "classification", "classes": classes,
        "positive_class": classes[1] if k == 2 else None, "threshold": threshold,
        "metric": metric, "overall": overall,
        "confusion_matrix": {"labels": classes, "matrix": cm.tolist()},
        "calibration": _calibration(y, p, labels, bins, overall["ece"]),
        "slices": {c: slice_table(frame, c, make, names) for c in slices},
        "groups": {},
    }
    groups = group_reports(frame, list(protected), y=y, proba_or_pred=p, labels=labels,
                           task="classification", min_group_size=min_group_size,
                           bootstrap=bootstrap, seed=seed, metric=metric) if protected else {}
    report["groups"] = {c: {**rep, "threshold": threshold} for c, rep in groups.items()}
    return report


def _calibration(y: np.ndarray, p: np.ndarray, labels: np.ndarray, bins: int,
                 ece: float | None) -> dict[str, Any]:
    """Reliability bins over [0, 1]: rows, mean predicted, fraction positive (or correct)."""
    conf, hit = calibration_terms(y, p, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)
    n = np.bincount(ids, minlength=bins)
    mean_p = np.bincount(ids, weights=conf, minlength=bins)
    frac = np.bincount(ids, weights=hit, minlength=bins)
    rows = [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(n[b]),
             "mean_predicted": as_float(mean_p[b] / n[b]) if n[b] else None,
             "fraction_positive": as_float(frac[b] / n[b]) if n[b] else None}
            for b in range(bins)]
    of = ("the positive class's probability; outcome: the row is of the positive class"
          if p.shape[1] == 2 else
          "the top-label confidence (largest probability); outcome: the label is right")
    return {"ece": ece, "of": of, "bins_hold": "(lo, hi]; the first bin also holds 0",
            "bins": rows}
