"""cd4ml.evaluation.regression against scikit-learn on real rows: wine's alcohol, ACS age."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression

from acs_data import ACS_INPUTS, require_acs
from cd4ml.evaluation import regression_report

REL = 1e-10


def reference(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"mae": skm.mean_absolute_error(y, p), "rmse": skm.root_mean_squared_error(y, p),
            "r2": skm.r2_score(y, p), "mape": skm.mean_absolute_percentage_error(y, p)}


@functools.lru_cache(maxsize=1)
def wine_alcohol() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_wine

    X, _ = load_wine(return_X_y=True, as_frame=True)
    y = X.pop("alcohol").to_numpy()
    half = np.arange(len(y)) % 2 == 0
    model = LinearRegression().fit(X[half], y[half])
    frame = X[~half].reset_index(drop=True)
    return frame, y[~half], model.predict(X[~half])


@functools.lru_cache(maxsize=1)
def acs_age() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Age (AGEP) from the other ACS inputs: a linear fit on 2015, predicted for 2016."""
    data = pd.read_parquet(require_acs())
    inputs = [c for c in ACS_INPUTS if c != "AGEP"]
    train, hold = data[data.year == 2015], data[data.year == 2016].reset_index(drop=True)
    model = LinearRegression().fit(train[inputs], train["AGEP"])
    return hold, hold["AGEP"].to_numpy(), model.predict(hold[inputs])


def test_wine_alcohol_metrics_match_sklearn():
    frame, y, p = wine_alcohol()
    frame = frame.assign(flav=pd.cut(frame["flavanoids"], [0, 1.5, 2.5, 9]).astype(str))
    rep = regression_report(y, p, frame=frame, slices=["flav"], bootstrap=0)
    o = rep["overall"]
    for name, ref in reference(y, p).items():
        assert o[name] == pytest.approx(ref, rel=REL), name
    assert (o["n"], o["weight_sum"], o["undefined"]) == (len(y), len(y), {})
    for row in rep["slices"]["flav"]:
        m = (frame["flav"] == row["value"]).to_numpy()
        assert row["n"] == m.sum() and row["weight_share"] == pytest.approx(m.mean())
        for name, ref in reference(y[m], p[m]).items():
            assert row[name] == pytest.approx(ref, rel=REL), (row["value"], name)
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep


def test_acs_age_mape_undefined_and_groups():
    hold, y, p = acs_age()
    assert (y == 0).sum() > 0  # babies: age 0
    frame = hold.assign(age40=np.where(y == 40, "40", "other"))
    rep = regression_report(y, p, frame=frame, slices=["age40"], protected=["SEX", "RAC1P"],
                            min_group_size=1000, bootstrap=200, seed=1)
    o = rep["overall"]
    assert o["mape"] is None and o["undefined"]["mape"] == "y holds zeros; MAPE divides by y"
    for name in ["mae", "rmse", "r2"]:
        assert o[name] == pytest.approx(reference(y, p)[name], rel=REL), name
    # a constant slice: R² is 0.0 unless predicted exactly (scikit-learn's force_finite)
    (forty,) = [r for r in rep["slices"]["age40"] if r["value"] == "40"]
    m = y == 40
    assert forty["r2"] == skm.r2_score(y[m], p[m]) == 0.0
    assert forty["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y[m], p[m]))
    for col in ["SEX", "RAC1P"]:
        g = rep["groups"][col]
        for row in g["groups"]:
            m = (hold[col] == row["value"]).to_numpy()
            assert row["n"] == m.sum()
            assert row["rmse"] == pytest.approx(skm.root_mean_squared_error(y[m], p[m]),
                                                rel=REL)
            assert row["tpr"] is None and row["selection_rate"] is None
        assert set(g["gaps"]) == {"rmse"}
        assert set(g["undefined"]) == {"tpr", "fpr", "selection_rate"}
        assert g["demographic_parity_difference"] is None
        gated = [r["rmse"] for r in g["groups"] if r["gated"]]
        gap = g["gaps"]["rmse"]
        assert gap["value"] == pytest.approx(max(gated) - min(gated), rel=REL)
        assert gap["ci"]["low"] <= gap["value"] <= gap["ci"]["high"]
    assert rep["groups"]["RAC1P"]["gated"] == [1, 2, 6, 8, 9]


def test_bad_input():
    with pytest.raises(ValueError, match="pred has 2 rows but y has 3"):
        regression_report([1.0, 2.0, 3.0], [1.0, 2.0], bootstrap=0)
    with pytest.raises(ValueError, match="y has 1 NaN values"):
        regression_report([1.0, np.nan], [1.0, 2.0], bootstrap=0)
    with pytest.raises(ValueError, match="metric == 'roc_auc', must be one of"):
        regression_report([1.0], [1.0], metric="roc_auc")
    with pytest.raises(ValueError, match=r"protected column\(s\) \['x'\] not in the frame"):
        regression_report([1.0], [1.0], frame=pd.DataFrame({"g": [1]}), protected=["x"])
