"""A binary classifier's performance estimated without labels, from its scores.

Confidence-based performance estimation (NannyML's CBPE is the anchor): if ``p`` is the
true probability that a row is positive, then over a window the expected true-positive
count above any score threshold is the sum of ``p`` there, and the expected false
positives the sum of ``1 - p``; the ROC curve, and the confusion matrix at the decision
threshold, follow, and so do ROC AUC, accuracy, precision, recall and F1.

``p`` comes from a :class:`Calibrator` fitted on the **holdout** (never on training rows,
which the model has seen): a small LightGBM model of the label from the score's logit
and the inputs, monotone increasing in the score. Calibrating on the score alone (as
CBPE does) assumes the model is equally well calibrated for every kind of row; on the
ACS data it is not (the young and the old are where it errs), and windows made of one
kind of row (chunks sorted by age) then get biased estimates. Conditioning on the inputs
keeps CBPE's one assumption, that P(label | inputs) does not change (no concept drift),
and drops the other. It is saved as LightGBM's text format, never pickled.

A window whose rows are all expected to be one class has no defined ROC AUC: the
estimate says ``None`` and why, it is not an alarm.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Calibrator", "expected_roc_auc", "expected_confusion", "estimate_binary",
           "CALIBRATOR_PARAMS"]

#: The calibrator's LightGBM parameters (seeded and deterministic).
CALIBRATOR_PARAMS: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.05, "num_leaves": 15,
    "min_data_in_leaf": 200, "lambda_l2": 1.0, "seed": 0, "deterministic": True,
    "num_threads": 1, "verbosity": -1}
CALIBRATOR_ROUNDS = 200


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(s / (1 - s))


@dataclass
class Calibrator:
    """P(label = 1 | score, inputs), learned on the holdout."""

    inputs: list[str]
    codes: dict[str, list[str]]  #: a categorical input's labels, in code order
    model_text: str

    @classmethod
    def fit(cls, scores: Any, labels: Any, frame: pd.DataFrame | None = None,
            kinds: Mapping[str, str] | None = None) -> Calibrator:
        import lightgbm as lgb

        inputs = list(frame.columns) if frame is not None else []
        kinds = dict(kinds or {})
        codes = {c: sorted(frame[c].dropna().astype(str).unique().tolist())
                 for c in inputs if kinds.get(c) == "categorical"
                 and not pd.api.types.is_numeric_dtype(frame[c])}
        X = cls._matrix(scores, frame, inputs, codes)
        y = np.asarray(labels, dtype=np.float64)
        mono = [1] + [0] * len(inputs)
        booster = lgb.train({**CALIBRATOR_PARAMS, "monotone_constraints": mono},
                            lgb.Dataset(X, y, free_raw_data=True),
                            num_boost_round=CALIBRATOR_ROUNDS)
        return cls(inputs, codes, booster.model_to_string())

    @staticmethod
    def _matrix(scores: Any, frame: pd.DataFrame | None, inputs: Sequence[str],
                codes: Mapping[str, list[str]]) -> np.ndarray:
        cols = [_logit(scores)]
        for c in inputs:
            s = frame[c] if frame is not None and c in frame.columns else pd.Series(
                np.nan, index=range(len(cols[0])))
            if c in codes:
                pos = {v: i for i, v in enumerate(codes[c])}
                cols.append(s.astype(str).map(pos).to_numpy(dtype=np.float64,
                                                              na_value=np.nan))
            else:
                cols.append(pd.to_numeric(s, errors="coerce").to_numpy(np.float64))
        return np.column_stack(cols)

    @functools.cached_property
    def _booster(self) -> Any:
        """The model parsed from its text once, not on every window."""
        import lightgbm as lgb

        return lgb.Booster(model_str=self.model_text)

    def predict(self, scores: Any, frame: pd.DataFrame | None = None) -> np.ndarray:
        return np.asarray(self._booster.predict(self._matrix(scores, frame, self.inputs,
                                                             self.codes)), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "codes": self.codes, "model": self.model_text}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        return cls(list(d["inputs"]), dict(d["codes"]), d["model"])


def expected_roc_auc(scores: Any, p: Any) -> float | None:
    """The ROC AUC expected if row ``i`` is positive with probability ``p[i]`` (tied
    scores share one point of the curve, as scikit-learn's ``roc_curve`` draws it)."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, p = s[order], p[order]
    tp, fp = np.cumsum(p), np.cumsum(1 - p)
    if len(s) == 0 or tp[-1] <= 0 or fp[-1] <= 0:
        return None
    last = np.r_[s[1:] != s[:-1], True]
    tpr = np.r_[0.0, tp[last] / tp[-1]]
    fpr = np.r_[0.0, fp[last] / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def expected_confusion(scores: Any, p: Any, threshold: float) -> dict[str, float]:
    """Expected counts of the confusion matrix when ``score >= threshold`` is positive."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    pos = s >= threshold
    return {"tp": float(p[pos].sum()), "fp": float((1 - p[pos]).sum()),
            "fn": float(p[~pos].sum()), "tn": float((1 - p[~pos]).sum())}


def _div(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def estimate_binary(scores: Any, p: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Estimated ROC AUC, accuracy, precision, recall and F1 of a window (None where a
    metric is undefined, with ``undefined`` saying which and why)."""
    c = expected_confusion(scores, p, threshold)
    n = sum(c.values())
    precision, recall = _div(c["tp"], c["tp"] + c["fp"]), _div(c["tp"], c["tp"] + c["fn"])
    f1 = (_div(2 * precision * recall, precision + recall)
          if precision is not None and recall is not None else None)
    out: dict[str, Any] = {
        "roc_auc": expected_roc_auc(scores, p), "accuracy": _div(c["tp"] + c["tn"], n),
        "precision": precision, "recall": recall, "f1": f1, "rows": int(len(np.asarray(p))),
        "expected_positive_rate": _div(c["tp"] + c["fn"], n)}
    undefined = {k: ("the window is expected to hold one class only" if k == "roc_auc"
                     else "no row on one side of the threshold, or no expected positive")
                 for k, v in out.items() if v is None}
    if undefined:
        out["undefined"] = undefined
    return out
