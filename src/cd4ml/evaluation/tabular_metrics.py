"""Classification and regression metrics of grouped rows, for reports, slices and groups.

A metric set is built once for the rows and their group codes; ``weights(draws)`` turns
drawn row indices into weights of its units and ``compute(W, names)`` returns
``{name: (B, G) array}`` (see :mod:`cd4ml.evaluation.grouped`); ``point(names)`` are the
plain metrics of the rows. NaN marks a metric undefined for a group; :data:`UNDEFINED`
says why.

Classification (``y`` class indices ``0..k-1``, ``proba`` of shape ``(n, k)``, ``labels``
the predicted class indices). Binary: the positive class is index 1, and precision,
recall, F1, TPR, FPR and the selection rate are of it. Multiclass: precision, recall and
F1 are macro averages over the classes where each is defined (scikit-learn's
``zero_division=np.nan``), ROC AUC and average precision are one-vs-rest macro averages
over the classes with rows of the class (ROC AUC: and of the others); TPR, FPR and the
selection rate are undefined. Brier score as scikit-learn's ``brier_score_loss``: the
mean squared distance to the one-hot truth, halved for two classes. ECE over
equal-width bins (scikit-learn's ``calibration_curve`` bins: ``(lo, hi]``, the first also
holds 0) of the positive class's probability (binary) or of the top-label confidence
with "correct" as the outcome (multiclass).

>>> y = np.array([0, 1, 1, 0]); p1 = np.array([0.2, 0.8, 0.4, 0.6])
>>> m = ClassificationMetrics(y, np.c_[1 - p1, p1], (p1 >= 0.5).astype(int),
...                           np.zeros(4, dtype=int), 1)
>>> {k: v.tolist() for k, v in m.point(["roc_auc", "accuracy"]).items()}
{'n': [[4.0]], 'roc_auc': [[0.75]], 'accuracy': [[0.5]]}
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from cd4ml.evaluation.grouped import Ranked, counts, ratio, sums

__all__ = ["ClassificationMetrics", "RegressionMetrics", "METRIC_SETS", "UNDEFINED",
           "calibration_terms",
           "CLASSIFICATION_METRICS", "REGRESSION_METRICS", "RATES"]

CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy",
                          "precision", "recall", "f1", "ece")
REGRESSION_METRICS = ("mae", "rmse", "r2", "mape")
#: binary classification only: the rates fairness compares between groups
RATES = ("selection_rate", "tpr", "fpr", "positives")

#: why a metric is None
UNDEFINED = {
    "roc_auc": "needs rows of both classes (one-vs-rest: of a class and of the others); "
               "the rows hold one class only",
    "pr_auc": "needs rows of the positive class (one-vs-rest: of some class); there are none",
    "precision": "no row is predicted positive (multiclass: no class is ever predicted)",
    "recall": "no row is of the positive class",
    "tpr": "no row is of the positive class",
    "fpr": "no row is of the negative class",
    "f1": "no row is of the positive class or predicted positive",
    "mape": "y holds zeros; MAPE divides by y",
    "multiclass": "multiclass: TPR, FPR and the selection rate need one positive class",
    "regression": "regression: no classes; only the metric's gap is compared",
}

_EPS = np.finfo(np.float64).eps


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: stays NaN
        return np.nanmean(x, axis=axis)


class ClassificationMetrics:
    """Binary or multiclass metrics of rows grouped by ``codes`` (``0..G-1``).

    Binary: rows with the same group, probability, class and label are one unit (a
    cell), sorted as :class:`~cd4ml.evaluation.grouped.Ranked` wants them, so a resample
    is a count per cell (census rows repeat: the 69k ACS rows of 2016 scored by a
    LightGBM make 32k cells when grouped by SEX). Multiclass: each row is a unit.
    """

    names = CLASSIFICATION_METRICS

    def __init__(self, y: np.ndarray, proba: np.ndarray, labels: np.ndarray,
                 codes: np.ndarray, G: int, *, bins: int = 10):
        self.k = proba.shape[1]
        self.binary = self.k == 2
        self.G, self.bins, self.n_rows = G, bins, y.size
        self.unit: np.ndarray | None = None  # row -> cell (binary)
        if self.binary:
            order = np.lexsort((labels, y, proba[:, 1], codes))
            cols = [a[order] for a in (codes, proba[:, 1], y, labels)]
            new = np.zeros(y.size, dtype=bool)
            new[0] = True
            for col in cols:
                new[1:] |= col[1:] != col[:-1]
            self.unit = np.empty(y.size, dtype=np.int32 if y.size < 2 ** 31 else np.int64)
            self.unit[order] = np.cumsum(new) - 1
            first = order[new]
            y, proba, labels, codes = y[first], proba[first], labels[first], codes[first]
        self.y, self.proba, self.labels, self.codes = y, proba, labels, codes
        self.rates = RATES if self.binary else ()
        self._ranked: dict[int, Ranked] = {}

    def weights(self, draws: np.ndarray) -> np.ndarray:
        """``(B, units)``: how often each unit was drawn."""
        if self.unit is None:
            return counts(draws, np.arange(self.n_rows, dtype=draws.dtype), self.n_rows)
        return counts(draws, self.unit, self.y.size)

    def point(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """:meth:`compute` on the rows as they are (each drawn once)."""
        return self.compute(self.weights(np.arange(self.n_rows)[None, :]), names)

    def _rank(self, c: int) -> Ranked:
        if c not in self._ranked:
            self._ranked[c] = Ranked(self.codes, self.G, self.proba[:, c], self.y == c,
                                     presorted=self.binary)
        return self._ranked[c]

    def compute(self, W: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """``{name: (B, G)}`` for ``names`` and ``"n"`` (the weight of each group)."""
        G, k, codes = self.G, self.k, self.codes
        want = set(names)
        sp = None
        if self.binary:  # two running sums serve the totals and both rankings
            r = self._rank(1)
            sp = r.split(W)
            Pg, Ng = r.totals(sp)
            n = Pg + Ng
        else:
            n = sums(W, codes, G)
        out: dict[str, np.ndarray] = {"n": n}
        if want & {"accuracy", "precision", "recall", "f1", *RATES}:
            cm = sums(W, (codes * k + self.y) * k + self.labels, G * k * k)
            out.update(self._from_confusion(cm.reshape(-1, G, k, k), n, want))
        if "log_loss" in want:
            p_true = np.clip(self.proba[np.arange(self.y.size), self.y], _EPS, 1 - _EPS)
            out["log_loss"] = ratio(sums(W, codes, G, -np.log(p_true)), n)
        if "brier" in want:
            d2 = ((self.proba - np.eye(k)[self.y]) ** 2).sum(axis=1)
            out["brier"] = ratio(sums(W, codes, G, d2 * (0.5 if self.binary else 1.0)), n)
        if "ece" in want:
            out["ece"] = self._ece(W, n)
        for name, how in (("roc_auc", Ranked.auc), ("pr_auc", Ranked.average_precision)):
            if name in want:
                if sp is not None:
                    out[name] = how(self._rank(1), sp)
                else:
                    per = [how(self._rank(c), self._rank(c).split(W)) for c in range(k)]
                    out[name] = _nanmean(np.stack(per, axis=-1), axis=-1)
        return {key: out[key] for key in ["n", *names] if key in out}

    def _from_confusion(self, cm: np.ndarray, n: np.ndarray, want: set[str],
                        ) -> dict[str, np.ndarray]:
        diag = np.diagonal(cm, axis1=-2, axis2=-1)  # (B, G, k)
        true_c, pred_c = cm.sum(axis=-1), cm.sum(axis=-2)
        out = {"accuracy": ratio(diag.sum(axis=-1), n)}
        if self.binary:
            tp = diag[..., 1]
            fp, fn = pred_c[..., 1] - tp, true_c[..., 1] - tp
            out.update(precision=ratio(tp, tp + fp), recall=ratio(tp, tp + fn),
                       f1=ratio(2 * tp, 2 * tp + fp + fn))
            if want & set(RATES):
                out.update(selection_rate=ratio(pred_c[..., 1], n), tpr=out["recall"],
                           fpr=ratio(fp, true_c[..., 0]), positives=true_c[..., 1])
        else:
            out.update(precision=_nanmean(ratio(diag, pred_c), -1),
                       recall=_nanmean(ratio(diag, true_c), -1),
                       f1=_nanmean(ratio(2 * diag, pred_c + true_c), -1))
        return out

    def _ece(self, W: np.ndarray, n: np.ndarray) -> np.ndarray:
        conf, hit = calibration_terms(self.y, self.proba, self.labels)
        edges = np.linspace(0.0, 1.0, self.bins + 1)
        key = self.codes * self.bins + np.searchsorted(edges[1:-1], conf)
        K = self.G * self.bins
        gap = np.abs(sums(W, key, K, hit) - sums(W, key, K, conf))
        return ratio(gap.reshape(-1, self.G, self.bins).sum(axis=-1), n)

    def not_rates(self) -> str:
        return UNDEFINED["multiclass"]


def calibration_terms(y: np.ndarray, proba: np.ndarray, labels: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The binned probability and its outcome: (p1, y == 1) binary, (max p, correct)."""
    if proba.shape[1] == 2:
        return proba[:, 1], (y == 1).astype(np.float64)
    return proba.max(axis=1), (labels == y).astype(np.float64)


class RegressionMetrics:
    """MAE, RMSE, R² and MAPE of rows grouped by ``codes``; R² of a constant ``y`` is 1.0
    when predicted exactly, else 0.0 (scikit-learn's ``force_finite``)."""

    names = REGRESSION_METRICS
    rates: tuple[str, ...] = ()

    def __init__(self, y: np.ndarray, pred: np.ndarray, labels: Any, codes: np.ndarray,
                 G: int, **_: Any):
        self.codes, self.G, self.n_rows = codes, G, y.size
        err = y - pred
        self.abs, self.sq = np.abs(err), err ** 2
        self.zero = (y == 0).astype(np.float64)
        self.ape = np.where(y == 0, 0.0, self.abs / np.where(y == 0, 1.0, np.abs(y)))
        # centred on each group's own mean, so the one-pass variance keeps its digits
        mean = ratio(np.bincount(codes, weights=y, minlength=G),
                     np.bincount(codes, minlength=G))
        self.yc = y - mean[codes]

    def weights(self, draws: np.ndarray) -> np.ndarray:
        """``(B, n)``: how often each row was drawn."""
        return counts(draws, np.arange(self.n_rows, dtype=draws.dtype), self.n_rows)

    def point(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """:meth:`compute` on the rows as they are (each drawn once)."""
        return self.compute(np.ones((1, self.n_rows)), names)

    def compute(self, W: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """``{name: (B, G)}`` for ``names`` and ``"n"`` (the weight of each group)."""
        G, codes = self.G, self.codes
        n = sums(W, codes, G)
        out = {"n": n, "mae": ratio(sums(W, codes, G, self.abs), n)}
        ss_res = sums(W, codes, G, self.sq)
        out["rmse"] = np.sqrt(ratio(ss_res, n))
        if "r2" in names:
            s1, s2 = sums(W, codes, G, self.yc), sums(W, codes, G, self.yc ** 2)
            ss_tot = s2 - ratio(s1 ** 2, n)
            constant = ss_tot <= 1e-12 * s2
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = 1.0 - ss_res / ss_tot
            out["r2"] = np.where(constant, np.where(ss_res == 0, 1.0, 0.0), r2)
            out["r2"][n == 0] = np.nan
        if "mape" in names:
            mape = ratio(sums(W, codes, G, self.ape), n)
            mape[sums(W, codes, G, self.zero) > 0] = np.nan
            out["mape"] = mape
        return {key: out[key] for key in ["n", *names] if key in out}

    def not_rates(self) -> str:
        return UNDEFINED["regression"]


#: the metric set of each tabular task
METRIC_SETS: dict[str, type] = {"classification": ClassificationMetrics,
                                "regression": RegressionMetrics}
