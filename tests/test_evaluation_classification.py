"""cd4ml.evaluation.classification against scikit-learn on real rows.

Binary: ACS employment 2016, scored by a LightGBM fitted on 2015 (tests/acs_data.py).
Multiclass: scikit-learn's wine data, scored by a logistic regression.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from acs_data import acs_scored, wine_scored
from cd4ml.evaluation import choose_threshold, classification_report

REL = 1e-10


def binary_reference(y: np.ndarray, p1: np.ndarray, t: float) -> dict[str, float]:
    lab = (p1 >= t).astype(int)
    return {"roc_auc": skm.roc_auc_score(y, p1),
            "pr_auc": skm.average_precision_score(y, p1),
            "log_loss": skm.log_loss(y, np.c_[1 - p1, p1]),
            "brier": skm.brier_score_loss(y, p1),
            "accuracy": skm.accuracy_score(y, lab),
            "precision": skm.precision_score(y, lab),
            "recall": skm.recall_score(y, lab),
            "f1": skm.f1_score(y, lab)}


def ece_reference(outcome: np.ndarray, conf: np.ndarray, bins: int) -> float:
    """ECE from scikit-learn's reliability curve, weighted by the rows of each bin."""
    frac, mean = calibration_curve(outcome, conf, n_bins=bins, strategy="uniform")
    ids = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], conf)
    n = np.bincount(ids, minlength=bins)
    return float(np.sum(n[n > 0] / conf.size * np.abs(frac - mean)))


@pytest.fixture(scope="module")
def acs():
    return acs_scored()


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_metrics_match_sklearn(acs, threshold):
    rep = classification_report(acs.y, acs.proba, classes=[0, 1], threshold=threshold,
                                bootstrap=0)
    o, p1 = rep["overall"], acs.proba[:, 1]
    for name, ref in binary_reference(acs.y, p1, threshold).items():
        assert o[name] == pytest.approx(ref, rel=REL), name
    assert (o["n"], o["weight_sum"], o["threshold"]) == (len(acs.y), len(acs.y), threshold)
    assert o["undefined"] == {}
    lab = (p1 >= threshold).astype(int)
    assert rep["confusion_matrix"] == {
        "labels": [0, 1], "matrix": skm.confusion_matrix(acs.y, lab).tolist()}
    assert rep["positive_class"] == 1
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep


@pytest.mark.parametrize("bins", [10, 15])
def test_binary_calibration_bins_match_calibration_curve(acs, bins):
    rep = classification_report(acs.y, acs.proba, classes=[0, 1], bins=bins, bootstrap=0)
    cal, p1 = rep["calibration"], acs.proba[:, 1]
    frac, mean = calibration_curve(acs.y, p1, n_bins=bins, strategy="uniform")
    filled = [b for b in cal["bins"] if b["n"] > 0]
    assert len(cal["bins"]) == bins and sum(b["n"] for b in cal["bins"]) == len(p1)
    assert [b["fraction_positive"] for b in filled] == pytest.approx(frac, rel=REL)
    assert [b["mean_predicted"] for b in filled] == pytest.approx(mean, rel=REL)
    assert cal["bins"][0]["lo"] == 0.0 and cal["bins"][-1]["hi"] == 1.0
    assert cal["ece"] == rep["overall"]["ece"]
    assert cal["ece"] == pytest.approx(ece_reference(acs.y, p1, bins), rel=1e-9)
    assert "positive class" in cal["of"]


def test_slices_match_sklearn_on_each_subset(acs):
    frame = acs.frame.assign(young=acs.frame["AGEP"] < 25)
    rep = classification_report(acs.y, acs.proba, classes=[0, 1], frame=frame,
                                slices=["SEX", "young"], bootstrap=0)
    for col in ["SEX", "young"]:
        rows = rep["slices"][col]
        assert [r["value"] for r in rows] == sorted(frame[col].unique().tolist())
        for row in rows:
            m = (frame[col] == row["value"]).to_numpy()
            assert row["n"] == m.sum() and row["weight_share"] == pytest.approx(m.mean())
            for name, ref in binary_reference(acs.y[m], acs.proba[m, 1], 0.5).items():
                assert row[name] == pytest.approx(ref, rel=REL), (col, row["value"], name)
            assert row["ece"] == pytest.approx(ece_reference(acs.y[m], acs.proba[m, 1], 10),
                                               rel=1e-9)


def test_undefined_metrics_are_none_with_a_reason(acs):
    # children under 16 are never employed: one class only
    frame = acs.frame.assign(child=acs.frame["AGEP"] < 16)
    assert acs.y[frame["child"].to_numpy()].max() == 0
    rep = classification_report(acs.y, acs.proba, classes=[0, 1], frame=frame,
                                slices=["child"], bootstrap=0)
    child = next(r for r in rep["slices"]["child"] if r["value"] is True)
    for name in ["roc_auc", "pr_auc", "recall"]:
        assert child[name] is None and child["undefined"][name], name
    assert "one class only" in child["undefined"]["roc_auc"]
    m = frame["child"].to_numpy()
    assert child["accuracy"] == pytest.approx(skm.accuracy_score(acs.y[m],
                                                                 acs.proba[m, 1] >= 0.5))
    assert child["log_loss"] == pytest.approx(skm.log_loss(acs.y[m], acs.proba[m],
                                                           labels=[0, 1]), rel=REL)
    # nothing predicted positive at a threshold above every probability
    top = float(acs.proba[:, 1].max())
    rep = classification_report(acs.y, acs.proba, classes=[0, 1],
                                threshold=min(top + (1 - top) / 2, 0.999999), bootstrap=0)
    o = rep["overall"]
    assert o["precision"] is None and "predicted positive" in o["undefined"]["precision"]
    assert o["recall"] == 0.0 and o["f1"] == 0.0
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep


def test_choose_threshold_maximises_accuracy(acs):
    rng = np.random.default_rng(0)
    rows = rng.choice(len(acs.y), 3000, replace=False)
    y, p1 = acs.y[rows], acs.proba[rows, 1]
    t = choose_threshold(y, p1)
    assert 0 < t < 1 and not np.isin(t, p1)
    u = np.unique(p1)
    grid = np.concatenate([u, (u[:-1] + u[1:]) / 2, np.linspace(0.001, 0.999, 999)])
    best = ((p1[None, :] >= grid[:, None]) == y).mean(axis=1).max()  # brute force
    assert skm.accuracy_score(y, p1 >= t) == best
    assert choose_threshold(y, p1) == t  # deterministic


def test_choose_threshold_tie_rule():
    # 0.25 and 0.7 both label 4 of 5 right; the one nearer 0.5 wins, then the lower
    assert choose_threshold([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9]) == 0.7
    assert choose_threshold([0, 1], [0.3, 0.7]) == 0.5
    assert choose_threshold([1, 1], [0.2, 0.4]) == 0.1  # all positive: below the smallest
    assert choose_threshold([0, 0], [0.0, 0.0]) == 0.5  # a probability of 0 is never positive
    with pytest.raises(ValueError, match="p1 must hold 2 finite probabilities"):
        choose_threshold([0, 1], [0.2, 1.5])


@pytest.fixture(scope="module")
def wine():
    return wine_scored()


def test_multiclass_metrics_match_sklearn(wine):
    y, p = wine.y, wine.proba
    rep = classification_report(y, p, classes=["a", "b", "c"], bootstrap=0)
    o, lab = rep["overall"], p.argmax(axis=1)
    assert 0.8 < o["accuracy"] < 1.0  # some errors, so precision/recall are informative
    ref = {"roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
           "pr_auc": skm.average_precision_score(label_binarize(y, classes=[0, 1, 2]), p,
                                                 average="macro"),
           "log_loss": skm.log_loss(y, p),
           "brier": skm.brier_score_loss(y, p, labels=[0, 1, 2]),
           "accuracy": skm.accuracy_score(y, lab),
           "precision": skm.precision_score(y, lab, average="macro"),
           "recall": skm.recall_score(y, lab, average="macro"),
           "f1": skm.f1_score(y, lab, average="macro")}
    for name, value in ref.items():
        assert o[name] == pytest.approx(value, rel=REL), name
    assert o["threshold"] is None and rep["positive_class"] is None
    assert rep["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, lab).tolist()
    conf, right = p.max(axis=1), (lab == y).astype(int)
    assert o["ece"] == pytest.approx(ece_reference(right, conf, 10), rel=1e-9)
    frac, mean = calibration_curve(right, conf, n_bins=10)
    filled = [b for b in rep["calibration"]["bins"] if b["n"]]
    assert [b["fraction_positive"] for b in filled] == pytest.approx(frac, rel=REL)
    assert [b["mean_predicted"] for b in filled] == pytest.approx(mean, rel=REL)
    assert "top-label" in rep["calibration"]["of"]


def test_multiclass_slice_missing_a_class(wine):
    # a slice without class 2: macro averages over the classes where each is defined,
    # as scikit-learn's zero_division=np.nan; one-vs-rest AUC over the classes present
    frame = wine.frame.assign(s=np.where(wine.y == 2, "with_c", "no_c"))
    frame.loc[np.flatnonzero(wine.y == 0)[:5], "s"] = "with_c"
    rep = classification_report(wine.y, wine.proba, classes=[0, 1, 2], frame=frame,
                                slices=["s"], bootstrap=0)
    row = next(r for r in rep["slices"]["s"] if r["value"] == "no_c")
    m = (frame["s"] == "no_c").to_numpy()
    y, p = wine.y[m], wine.proba[m]
    lab = p.argmax(axis=1)
    assert set(y) == {0, 1}
    for name, fn in [("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)]:
        assert row[name] == pytest.approx(fn(y, lab, average="macro", labels=[0, 1, 2],
                                             zero_division=np.nan), rel=REL), name
    auc = np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in (0, 1)])
    assert row["roc_auc"] == pytest.approx(auc, rel=REL)
    assert row["brier"] == pytest.approx(skm.brier_score_loss(y, p, labels=[0, 1, 2]),
                                         rel=REL)


def test_bad_input_names_the_field(acs, wine):
    y, p = acs.y[:100], acs.proba[:100]
    cases = [
        (dict(y=y + 1), r"y holds 2 .* class indices must be in 0..1"),
        (dict(y=np.array(["yes"] * 100)), r"y must hold class indices 0..1, got <U3"),
        (dict(y=y + 0.5), r"y holds \d\.5; class indices are whole numbers"),
        (dict(proba=p[:, :1]), r"proba has shape \(100, 1\), expected \(100, 2\)"),
        (dict(proba=p * 0.9), r"proba row 0 sums to 0.9"),
        (dict(proba=np.where(p > 0.5, np.nan, p)), r"proba has \d+ NaN or infinite"),
        (dict(threshold=1.0), r"threshold == 1.0, must be in \(0, 1\)"),
        (dict(classes=[0]), r"classes = \[0\]: need at least 2 distinct classes"),
        (dict(metric="auc"), r"metric == 'auc', must be one of"),
        (dict(protected=["SEX"]), r"needs frame=, the rows' columns"),
        (dict(frame=acs.frame, protected=["SEX"]), r"frame has 69,126 rows but y has 100"),
        (dict(frame=acs.frame[:100], protected=["sex"]),
         r"column\(s\) \['sex'\] not in the frame"),
        (dict(frame=acs.frame[:100], slices=["SEX", "SEX"]), r"repeats a column"),
    ]
    for change, message in cases:
        kw = {"y": y, "proba": p, "classes": [0, 1], "bootstrap": 0, **change}
        with pytest.raises(ValueError, match=message):
            classification_report(kw.pop("y"), kw.pop("proba"), **kw)
    with pytest.raises(ValueError, match="applies to binary classification only"):
        classification_report(wine.y, wine.proba, classes=[0, 1, 2], threshold=0.5)


def test_no_sklearn_scipy_or_fairlearn_at_runtime():
    code = (
        "import sys, numpy as np, pandas as pd, cd4ml.evaluation as e\n"
        "y = np.array([0, 1, 1, 0, 1, 0]); p1 = np.array([.2, .7, .6, .4, .9, .1])\n"
        "f = pd.DataFrame({'g': [1, 1, 1, 2, 2, 2]})\n"
        "e.classification_report(y, np.c_[1 - p1, p1], classes=[0, 1], frame=f,\n"
        "    slices=['g'], protected=['g'], min_group_size=1, bootstrap=20)\n"
        "e.regression_report(p1 + 1, p1, frame=f, protected=['g'], bootstrap=20)\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('sklearn', 'scipy', 'fairlearn')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_report_of_a_frame_with_any_index(acs):
    # the frame's index does not matter: rows are matched by position
    frame = acs.frame.iloc[:500].set_index(pd.Index(np.arange(500) * 7 + 3))
    rep = classification_report(acs.y[:500], acs.proba[:500], classes=[0, 1], frame=frame,
                                slices=["SEX"], bootstrap=0)
    m = (frame["SEX"] == 1).to_numpy()
    row = rep["slices"]["SEX"][0]
    assert row["value"] == 1 and row["n"] == m.sum()
    assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(acs.y[:500][m],
                                                             acs.proba[:500][m, 1]), rel=REL)
