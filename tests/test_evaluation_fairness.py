"""cd4ml.evaluation.fairness against fairlearn (MetricFrame, the two differences) and
scipy's bootstrap, on the ACS employment rows of 2016 scored by a model fitted on 2015."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame, count, demographic_parity_difference, equalized_odds_difference,
    false_positive_rate, selection_rate, true_positive_rate,
)
from scipy import stats
from sklearn import metrics as skm

from acs_data import acs_scored, wine_scored
from cd4ml.evaluation import classification_report, group_report

REL = 1e-10
MIN = 1000


@pytest.fixture(scope="module")
def acs():
    return acs_scored()


@pytest.fixture(scope="module")
def report(acs):
    """The ACS report with 1,000 resamples for SEX and RAC1P (timed: see the test)."""
    start = time.process_time()
    rep = classification_report(acs.y, acs.proba, classes=[0, 1], frame=acs.frame,
                                protected=["SEX", "RAC1P"], min_group_size=MIN,
                                bootstrap=1000, seed=0)
    rep["_cpu_s"] = time.process_time() - start
    return rep


@pytest.mark.parametrize("col", ["SEX", "RAC1P"])
def test_groups_match_fairlearn_metricframe(acs, report, col):
    g = report["groups"][col]
    lab = (acs.proba[:, 1] >= 0.5).astype(int)
    sf = acs.frame[col]
    mf = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                              "fpr": false_positive_rate, "n": count},
                     y_true=acs.y, y_pred=lab, sensitive_features=sf).by_group
    auc = MetricFrame(metrics=skm.roc_auc_score, y_true=acs.y, y_pred=acs.proba[:, 1],
                      sensitive_features=sf).by_group
    assert [r["value"] for r in g["groups"]] == sorted(mf.index.tolist())
    for row in g["groups"]:
        ref = mf.loc[row["value"]]
        assert row["n"] == ref["n"] and row["gated"] == (ref["n"] >= MIN)
        assert row["positives"] == int(acs.y[(sf == row["value"]).to_numpy()].sum())
        for name in ["selection_rate", "tpr", "fpr"]:
            assert row[name] == pytest.approx(ref[name], rel=REL), (row["value"], name)
        assert row["roc_auc"] == pytest.approx(auc.loc[row["value"]], rel=REL)
    # the differences: fairlearn's, on the rows of the gated groups
    m = sf.isin(g["gated"]).to_numpy()
    dpd = demographic_parity_difference(acs.y[m], lab[m], sensitive_features=sf[m])
    eod = equalized_odds_difference(acs.y[m], lab[m], sensitive_features=sf[m])
    assert g["demographic_parity_difference"] == pytest.approx(dpd, rel=1e-9)
    assert g["equalized_odds_difference"] == pytest.approx(eod, rel=1e-9)
    assert g["gaps"]["selection_rate"]["value"] == g["demographic_parity_difference"]
    assert g["gaps"]["equalized_odds"]["value"] == g["equalized_odds_difference"]
    tpr = mf.loc[g["gated"], "tpr"]
    gap = g["gaps"]["tpr"]
    assert gap["value"] == pytest.approx(tpr.max() - tpr.min(), rel=1e-9)
    assert (gap["max_group"], gap["min_group"]) == (tpr.idxmax(), tpr.idxmin())
    assert g["threshold"] == 0.5


def test_small_groups_are_listed_not_gated(report):
    rac = report["groups"]["RAC1P"]
    assert rac["gated"] == [1, 2, 6, 8, 9]  # the figure for min_group_size 1,000
    assert [(s["value"], s["reason"]) for s in rac["not_gated"]] == [
        (3, "n 73 < min_group_size 1,000"), (4, "n 4 < min_group_size 1,000"),
        (5, "n 56 < min_group_size 1,000"), (7, "n 32 < min_group_size 1,000")]
    assert report["groups"]["SEX"]["not_gated"] == []
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_intervals_contain_the_gap_and_resampling_is_fast(report):
    for col in ["SEX", "RAC1P"]:
        for name, gap in report["groups"][col]["gaps"].items():
            ci = gap["ci"]
            assert ci["resamples"] == 1000, (col, name)
            assert ci["low"] <= gap["value"] <= ci["high"], (col, name)
    # 2 columns x 1,000 resamples of 69k rows (tpr, fpr, selection rate, ROC AUC): a loop
    # over rows would take minutes; measured ~3 s of CPU on a busy 2-core machine
    assert report["_cpu_s"] < 30


def test_bootstrap_is_seeded(acs):
    kw = dict(y=acs.y, proba_or_pred=acs.proba, labels=(acs.proba[:, 1] >= 0.5).astype(int),
              task="classification", min_group_size=MIN, bootstrap=200, metric="accuracy")
    a = group_report(acs.frame, "SEX", seed=3, **kw)
    b = group_report(acs.frame, "SEX", seed=3, **kw)
    c = group_report(acs.frame, "SEX", seed=4, **kw)
    assert a == b
    ca, cc = a["gaps"]["tpr"]["ci"], c["gaps"]["tpr"]["ci"]
    assert ca != cc
    wa, wc = ca["high"] - ca["low"], cc["high"] - cc["low"]
    assert wc == pytest.approx(wa, rel=0.25)


def test_interval_width_matches_scipy_bootstrap(acs):
    """The SEX TPR gap's percentile interval against scipy.stats.bootstrap's."""
    y, sex = acs.y, acs.frame["SEX"].to_numpy()
    lab = (acs.proba[:, 1] >= 0.5).astype(int)

    def tpr_gap(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        """|TPR(SEX 1) - TPR(SEX 2)| of the rows drawn, per resample (scipy batches them)."""
        pos, s, hit = y[idx] == 1, sex[idx], lab[idx] == 1
        t = [(pos & (s == v) & hit).sum(axis) / (pos & (s == v)).sum(axis) for v in (1, 2)]
        return np.abs(t[0] - t[1])

    ref = stats.bootstrap((np.arange(len(y)),), tpr_gap, n_resamples=500, batch=50,
                          method="percentile", random_state=np.random.default_rng(0))
    ours = group_report(acs.frame, "SEX", y=y, proba_or_pred=acs.proba, labels=lab,
                        task="classification", min_group_size=MIN, bootstrap=500, seed=0,
                        metric="accuracy")["gaps"]["tpr"]
    lo, hi = ref.confidence_interval
    assert ours["value"] == pytest.approx(tpr_gap(np.arange(len(y))), rel=1e-9)
    assert ours["ci"]["high"] - ours["ci"]["low"] == pytest.approx(hi - lo, rel=0.2)
    assert ours["ci"]["low"] == pytest.approx(lo, abs=0.2 * (hi - lo))
    assert ours["ci"]["high"] == pytest.approx(hi, abs=0.2 * (hi - lo))


def test_multiclass_groups_compare_the_metric_only():
    wine = wine_scored()
    frame = wine.frame.assign(strong=np.where(wine.frame["alcohol"] > 13.0, "yes", "no"))
    rep = classification_report(wine.y, wine.proba, classes=[0, 1, 2], frame=frame,
                                protected=["strong"], min_group_size=20, bootstrap=200,
                                metric="accuracy")
    g = rep["groups"]["strong"]
    assert set(g["gaps"]) == {"accuracy"}
    assert "multiclass" in g["undefined"]["tpr"]
    assert g["demographic_parity_difference"] is None is g["equalized_odds_difference"]
    lab = wine.proba.argmax(axis=1)
    acc = MetricFrame(metrics=skm.accuracy_score, y_true=wine.y, y_pred=lab,
                      sensitive_features=frame["strong"]).by_group
    for row in g["groups"]:
        assert row["accuracy"] == pytest.approx(acc.loc[row["value"]], rel=REL)
        assert row["tpr"] is None
    assert g["gaps"]["accuracy"]["value"] == pytest.approx(acc.max() - acc.min(), rel=REL)


def test_missing_values_form_a_group_and_bad_input(acs):
    frame = acs.frame.iloc[:3000].copy()
    frame["RAC1P"] = frame["RAC1P"].astype("float64")
    frame.loc[:99, "RAC1P"] = np.nan
    y, p = acs.y[:3000], acs.proba[:3000]
    lab = (p[:, 1] >= 0.5).astype(int)
    g = group_report(frame, "RAC1P", y=y, proba_or_pred=p, labels=lab,
                     task="classification", min_group_size=100, bootstrap=0, seed=0,
                     metric="roc_auc")
    last = g["groups"][-1]
    assert last["value"] is None and last["n"] == 100 and last["gated"]
    assert g["gaps"]["tpr"]["ci"] is None  # no resamples asked for
    kw = dict(y=y, proba_or_pred=p, labels=lab, min_group_size=100, bootstrap=0, seed=0)
    with pytest.raises(ValueError, match=r"protected column\(s\) \['race'\] not in the frame"):
        group_report(frame, "race", task="classification", metric="roc_auc", **kw)
    with pytest.raises(ValueError, match="task == 'ranking'"):
        group_report(frame, "SEX", task="ranking", metric="roc_auc", **kw)
    with pytest.raises(ValueError, match="metric == 'rmse' is not a classification metric"):
        group_report(frame, "SEX", task="classification", metric="rmse", **kw)
    with pytest.raises(ValueError, match="min_group_size == 0"):
        group_report(frame, "SEX", task="classification", metric="roc_auc",
                     **{**kw, "min_group_size": 0})
    one = group_report(frame.assign(k=1), "k", task="classification", metric="roc_auc", **kw)
    assert one["gaps"]["tpr"]["value"] is None
    assert one["gaps"]["tpr"]["note"] == "1 gated group(s); a gap needs 2"
    pd.testing.assert_frame_equal(frame, frame.copy())  # inputs untouched
