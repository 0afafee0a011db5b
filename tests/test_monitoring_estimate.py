"""Performance estimated without labels, against scikit-learn and against what happened.

The expected ROC AUC and confusion matrix are checked against scikit-learn (with labels
for probabilities they must be the realized figures exactly; with probabilities, the mean
over labels drawn from them). Then the case where estimation can fail: ACS 2017-2018,
people aged 16 and over sorted by age, chunks of 10,000 (117,627 rows): the model's
realized AUC ranges 0.69-0.80, and the estimate, calibrated on the 2016 holdout, must
follow it.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from cd4ml.monitoring.estimate import (Calibrator, estimate_binary, expected_confusion,
                                       expected_roc_auc)

from acs_data import ACS_INPUTS, acs_scored, require_acs  # noqa: E402


def test_expected_figures_with_labels_as_probabilities_are_the_realized_ones() -> None:
    s = acs_scored()
    score, y = s.proba[:, 1], s.y
    assert expected_roc_auc(score, y) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    rounded = np.round(score, 2)  # many ties: they share one point of the curve
    assert expected_roc_auc(rounded, y) == pytest.approx(roc_auc_score(y, rounded), abs=1e-12)
    c = expected_confusion(score, y, 0.5)
    tn, fp, fn, tp = confusion_matrix(y, score >= 0.5).ravel()
    assert (c["tn"], c["fp"], c["fn"], c["tp"]) == (tn, fp, fn, tp)


def test_expected_auc_is_the_mean_over_labels_drawn_from_the_probabilities() -> None:
    s = acs_scored()
    score = s.proba[:5000, 1]
    p = np.clip(score * 0.9 + 0.05, 0, 1)
    rng = np.random.default_rng(0)
    draws = [roc_auc_score(rng.random(len(p)) < p, score) for _ in range(400)]
    assert expected_roc_auc(score, p) == pytest.approx(np.mean(draws), abs=2e-3)


def test_undefined_windows_say_so() -> None:
    est = estimate_binary(np.array([0.2, 0.7]), np.zeros(2))
    assert est["roc_auc"] is None and "one class only" in est["undefined"]["roc_auc"]
    assert est["accuracy"] == 0.5
    empty = estimate_binary(np.array([]), np.array([]))
    assert empty["roc_auc"] is None and empty["accuracy"] is None


@functools.lru_cache(maxsize=1)
def _served() -> tuple[object, pd.DataFrame, pd.DataFrame]:
    """The employment example's recipe fitted on 2015 (as its holdout stage fits it)."""
    import lightgbm as lgb

    data = pd.read_parquet(require_acs())
    model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.05, num_leaves=31,
                               min_child_samples=50, subsample=0.8, subsample_freq=1,
                               colsample_bytree=0.8, random_state=0, n_jobs=2, verbose=-1)
    train = data[data.year == 2015]
    model.fit(train[ACS_INPUTS], train.employed)
    hold = data[data.year == 2016].reset_index(drop=True)
    later = (data[(data.year >= 2017) & (data.AGEP >= 16)]
             .sort_values("AGEP", kind="stable").reset_index(drop=True))
    return model, hold, later


def test_estimated_auc_follows_the_realized_one_chunk_by_chunk() -> None:
    model, hold, later = _served()
    cal = Calibrator.fit(model.predict_proba(hold[ACS_INPUTS])[:, 1], hold.employed,
                         hold[ACS_INPUTS], {c: "categorical" for c in ACS_INPUTS[1:]})
    cal = Calibrator.from_dict(cal.to_dict())  # as stored in a reference
    score = model.predict_proba(later[ACS_INPUTS])[:, 1]
    p = cal.predict(score, later[ACS_INPUTS])
    assert len(later) == 117_627
    rng = np.random.default_rng(1)
    realized, errors = [], []
    for start in range(0, len(later), 10_000):
        sl = slice(start, start + 10_000)
        y, s = later.employed.to_numpy()[sl], score[sl]
        real, est = roc_auc_score(y, s), expected_roc_auc(s, p[sl])
        # the realized AUC's own sampling error in a short chunk (bootstrap)
        se = 0.0 if len(y) == 10_000 else np.std(
            [roc_auc_score(y[i], s[i]) for i in
             (rng.integers(0, len(y), len(y)) for _ in range(100))])
        realized.append(real)
        errors.append((len(y), abs(est - real), se))
    assert min(realized) < 0.70 and max(realized) > 0.79  # a constant guess cannot pass
    for n, err, se in errors:
        if n == 10_000:
            assert err <= 0.02, errors
        else:  # the last 7,627 rows (361 employed): the realized figure itself is noisy
            assert err <= max(0.02, 2.5 * se), errors
    # calibrating on the score alone (CBPE's assumption) misses the youngest chunk
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip").fit(
        model.predict_proba(hold[ACS_INPUTS])[:, 1], hold.employed)
    y0, s0 = later.employed.to_numpy()[:10_000], score[:10_000]
    assert abs(expected_roc_auc(s0, iso.predict(s0)) - roc_auc_score(y0, s0)) > 0.02


def test_calibrator_is_monotone_in_the_score_and_reads_unseen_categories() -> None:
    model, hold, _ = _served()
    frame = hold[ACS_INPUTS].head(3000).copy()
    frame["SCHL"] = frame["SCHL"].astype(str)
    cal = Calibrator.fit(model.predict_proba(hold[ACS_INPUTS].head(3000))[:, 1],
                         hold.employed.head(3000), frame, {"SCHL": "categorical"})
    row = frame.head(1)
    rows = pd.concat([row] * 50, ignore_index=True)
    p = cal.predict(np.linspace(0.01, 0.99, 50), rows)
    assert (np.diff(p) >= -1e-12).all()
    rows["SCHL"] = "never seen"
    assert np.isfinite(cal.predict(np.full(50, 0.5), rows)).all()
