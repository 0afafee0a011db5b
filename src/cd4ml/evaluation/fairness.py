"""Protected groups: per-group rates and metric, the gaps between groups, their intervals.

:func:`group_report` compares the groups of one column. A group with at least
``min_group_size`` rows is *gated*; smaller groups are reported under ``not_gated`` and
left out of every gap. A gap is the largest minus the smallest value over the gated
groups where the value is defined, as fairlearn's ``method="between_groups"``:
``demographic_parity_difference`` is the selection-rate gap, ``equalized_odds_difference``
the larger of the TPR and FPR gaps (binary classification only; both are None otherwise).

Each gap has a 95 % bootstrap percentile interval: ``bootstrap`` resamples of the whole
holdout (rows drawn with replacement, seeded by ``seed``); in each, the gap is taken over
the same gated groups. Resamples are weightings of the rows, so every group's sums of
every resample come from one ``bincount`` (:mod:`cd4ml.evaluation.grouped`).

>>> import pandas as pd
>>> frame = pd.DataFrame({"sex": [1, 1, 1, 2, 2, 2]})
>>> y = np.array([1, 1, 0, 1, 1, 0]); labels = np.array([1, 0, 0, 1, 1, 1])
>>> p1 = np.array([0.9, 0.4, 0.2, 0.8, 0.7, 0.6])
>>> rep = group_report(frame, "sex", y=y, proba_or_pred=np.c_[1 - p1, p1], labels=labels,
...                    task="classification", min_group_size=3, bootstrap=0, seed=0,
...                    metric="roc_auc")
>>> [(g["value"], g["tpr"], g["fpr"]) for g in rep["groups"]]
[(1, 0.5, 0.0), (2, 1.0, 1.0)]
>>> rep["equalized_odds_difference"], rep["gaps"]["tpr"]["max_group"]
(1.0, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.evaluation.grouped import resamples
from cd4ml.evaluation.tables import as_float, factorize, frame_for, metric_rows
from cd4ml.evaluation.tabular_metrics import METRIC_SETS, RATES

__all__ = ["group_report", "group_reports", "GAP_RATES"]

#: the rates compared between groups (binary classification); the task metric is too
GAP_RATES = ("tpr", "fpr", "selection_rate")


def group_report(frame: pd.DataFrame, column: str, *, y: np.ndarray,
                 proba_or_pred: np.ndarray, labels: np.ndarray | None, task: str,
                 min_group_size: int, bootstrap: int, seed: int, metric: str,
                 ) -> dict[str, Any]:
    """The groups of ``frame[column]`` compared; see the module.

    ``y``: class indices (classification) or values (regression); ``proba_or_pred``:
    probabilities ``(n, k)`` or predictions ``(n,)``; ``labels``: the predicted class
    indices at the decision threshold (classification; None for regression).
    """
    return group_reports(frame, [column], y=y, proba_or_pred=proba_or_pred, labels=labels,
                         task=task, min_group_size=min_group_size, bootstrap=bootstrap,
                         seed=seed, metric=metric)[column]


def group_reports(frame: pd.DataFrame, columns: Sequence[str], *, y: np.ndarray,
                  proba_or_pred: np.ndarray, labels: np.ndarray | None, task: str,
                  min_group_size: int, bootstrap: int, seed: int, metric: str,
                  ) -> dict[str, dict[str, Any]]:
    """:func:`group_report` of each column, the columns sharing the same resamples."""
    if task not in METRIC_SETS:
        raise ValueError(f"task == {task!r}; group reports are for {sorted(METRIC_SETS)}")
    if not (min_group_size >= 1 and bootstrap >= 0):
        raise ValueError(f"min_group_size == {min_group_size}, bootstrap == {bootstrap}; "
                         "need min_group_size >= 1 and bootstrap >= 0")
    frame_for(frame, columns, len(y), what="protected")
    parts = [_Column(frame[c], y, proba_or_pred, labels, task, metric, min_group_size)
             for c in columns]
    if bootstrap and any(part.gated.sum() >= 2 for part in parts):
        for draws in resamples(len(y), bootstrap, seed):
            for part in parts:
                part.add_resamples(draws)
    return {c: part.report(c, task, metric, min_group_size, bootstrap, seed)
            for c, part in zip(columns, parts)}


class _Column:
    """One protected column: its groups, their point values and the resampled gaps."""

    def __init__(self, values: pd.Series, y: np.ndarray, proba_or_pred: np.ndarray,
                 labels: np.ndarray | None, task: str, metric: str, min_group_size: int):
        self.values, codes = factorize(values)
        G = len(self.values)
        self.metrics = METRIC_SETS[task](y, proba_or_pred, labels, codes, G)
        if metric not in self.metrics.names:
            raise ValueError(f"metric == {metric!r} is not a {task} metric; use one of "
                             f"{list(self.metrics.names)}")
        rates = self.metrics.rates
        self.compared = list(dict.fromkeys([*(r for r in GAP_RATES if r in rates), metric]))
        self.names = list(dict.fromkeys([*(r for r in RATES if r in rates), metric]))
        self.point = self.metrics.point(self.names)
        self.gated = self.point["n"][0] >= min_group_size
        self.boot: dict[str, list[np.ndarray]] = {m: [] for m in self.compared}

    def add_resamples(self, draws: np.ndarray) -> None:
        """Per compared metric, the gap over the gated groups in each resample (NaN: none)."""
        if self.gated.sum() < 2:
            return
        values = self.metrics.compute(self.metrics.weights(draws), self.compared)
        for m in self.compared:
            v = values[m][:, self.gated]
            ok = np.isfinite(v)
            hi = np.where(ok, v, -np.inf).max(axis=1)
            lo = np.where(ok, v, np.inf).min(axis=1)
            self.boot[m].append(np.where(ok.sum(axis=1) >= 2, hi - lo, np.nan))

    def report(self, column: str, task: str, metric: str, min_group_size: int,
               bootstrap: int, seed: int) -> dict[str, Any]:
        n, gated, values = self.point["n"][0], self.gated, self.values
        groups = []
        for g, row in enumerate(metric_rows(self.point, self.names, len(values))):
            entry = {"value": values[g], "n": int(n[g]), "gated": bool(gated[g]),
                     **{r: row.get(r) for r in RATES}, metric: row[metric],
                     "undefined": row["undefined"]}
            if entry["positives"] is not None:
                entry["positives"] = int(entry["positives"])
            groups.append(entry)
        boot = {m: np.concatenate(b) for m, b in self.boot.items() if b}
        gaps = {m: {**_gap(m, self.point[m][0], gated, values), "ci": _interval(boot.get(m))}
                for m in self.compared}
        if {"tpr", "fpr"} <= set(gaps):
            gaps["equalized_odds"] = _equalized_odds(gaps, boot)
        undefined = {r: self.metrics.not_rates() for r in GAP_RATES
                     if r not in self.metrics.rates}
        return {
            "column": column, "task": task, "metric": metric,
            "min_group_size": min_group_size, "groups": groups,
            "gated": [g["value"] for g in groups if g["gated"]],
            "not_gated": [{"value": g["value"], "n": g["n"],
                           "reason": f"n {g['n']:,} < min_group_size {min_group_size:,}"}
                          for g in groups if not g["gated"]],
            "demographic_parity_difference": gaps.get("selection_rate", {}).get("value"),
            "equalized_odds_difference": gaps.get("equalized_odds", {}).get("value"),
            "gaps": gaps, "undefined": undefined,
            "bootstrap": {"resamples": bootstrap, "seed": seed, "interval": "percentile 95 %",
                          "scheme": "rows of the whole holdout drawn with replacement"},
        }


def _equalized_odds(gaps: dict[str, Any], boot: dict[str, np.ndarray]) -> dict[str, Any]:
    """The larger of the TPR and FPR gaps, and its interval (per resample, the larger)."""
    defined = [gaps[m] for m in ("tpr", "fpr") if gaps[m]["value"] is not None]
    worst = max(defined, key=lambda e: e["value"]) if defined else None
    ci = _interval(np.fmax(boot["tpr"], boot["fpr"])) if "tpr" in boot else None
    return {"metric": "equalized_odds", "value": None if worst is None else worst["value"],
            "of": None if worst is None else worst["metric"], "ci": ci}


def _gap(metric: str, values: np.ndarray, gated: np.ndarray, names: Sequence[Any],
         ) -> dict[str, Any]:
    ok = gated & np.isfinite(values)
    entry: dict[str, Any] = {"metric": metric, "value": None, "max_group": None,
                             "max_value": None, "min_group": None, "min_value": None,
                             "groups_compared": int(ok.sum())}
    if ok.sum() < 2:
        entry["note"] = (f"{int(ok.sum())} gated group(s) with a defined value; a gap needs 2"
                         if gated.sum() >= 2 else f"{int(gated.sum())} gated group(s); "
                         "a gap needs 2")
        return entry
    idx = np.flatnonzero(ok)
    hi = idx[np.argmax(values[idx])]  # first of equal values: the first group listed
    lo = idx[np.argmin(values[idx])]
    entry.update(value=float(values[hi] - values[lo]), max_group=names[hi],
                 max_value=float(values[hi]), min_group=names[lo], min_value=float(values[lo]))
    return entry


def _interval(gaps: np.ndarray | None) -> dict[str, Any] | None:
    if gaps is None:
        return None
    ok = gaps[np.isfinite(gaps)]
    if ok.size == 0:
        return None
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return {"low": as_float(lo), "high": as_float(hi), "resamples": int(ok.size)}
