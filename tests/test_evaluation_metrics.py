"""cd4ml.evaluation.metrics against scikit-learn, by hand, and on real Walmart rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    mean_absolute_error, mean_squared_error, mean_squared_log_error, r2_score,
)

import cd4ml.evaluation as ev
from cd4ml.evaluation import (
    METRICS, compute_metrics, holiday_weights, mae, nwrmsle, r2, rmse, wmae,
)


def _data_dir() -> Path:
    env = os.environ.get("CD4ML_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


WALMART = _data_dir() / "walmart" / "train.csv.zip"


def _sk_nwrmsle(y, p, w=None):
    y, p = np.clip(y, 0, None), np.clip(p, 0, None)
    return float(np.sqrt(mean_squared_log_error(y, p, sample_weight=w)))


REFERENCES = {
    "wmae": lambda y, p, w: mean_absolute_error(y, p, sample_weight=w),
    "mae": lambda y, p, w: mean_absolute_error(y, p, sample_weight=w),
    "rmse": lambda y, p, w: np.sqrt(mean_squared_error(y, p, sample_weight=w)),
    "r2": lambda y, p, w: r2_score(y, p, sample_weight=w),
    "nwrmsle": _sk_nwrmsle,
}


@pytest.fixture(scope="module")
def walmart_pairs() -> pd.DataFrame:
    """Every Walmart row with a seasonal-naive prediction (sales 52 weeks earlier)."""
    if not WALMART.is_file():
        pytest.skip(f"Walmart data not found at {WALMART}; set CD4ML_SHARED_DATA to the "
                    "folder holding walmart/train.csv.zip")
    df = pd.read_csv(WALMART, parse_dates=["Date"])
    prev = df[["Store", "Dept", "Date", "Weekly_Sales"]].rename(
        columns={"Weekly_Sales": "naive"})
    prev["Date"] = prev["Date"] + pd.Timedelta(weeks=52)
    out = df.merge(prev, on=["Store", "Dept", "Date"], how="inner")
    assert len(out) > 200_000 and (out["Weekly_Sales"] < 0).any() and (out["naive"] < 0).any()
    return out


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.gamma(2.0, 50.0, size=500) - 10.0  # a few negatives, like returns
    p = y + rng.normal(0.0, 20.0, size=500)
    w = holiday_weights(rng.random(500) < 0.1)
    return y, p, w


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("weighted", [False, True])
def test_metric_matches_sklearn_on_synthetic(name, weighted, synthetic):
    y, p, w = synthetic
    w = w if weighted else None
    assert METRICS[name](y, p, w) == pytest.approx(REFERENCES[name](y, p, w), rel=1e-10)


@pytest.mark.full_data
@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("weighted", [False, True])
def test_metric_matches_sklearn_on_walmart(name, weighted, walmart_pairs):
    y = walmart_pairs["Weekly_Sales"].to_numpy()
    p = walmart_pairs["naive"].to_numpy()
    w = holiday_weights(walmart_pairs["IsHoliday"]) if weighted else None
    assert METRICS[name](y, p, w) == pytest.approx(REFERENCES[name](y, p, w), rel=1e-9)


@pytest.mark.full_data
def test_metrics_accept_pandas_series(walmart_pairs):
    head = walmart_pairs.head(1000)
    assert wmae(head["Weekly_Sales"], head["naive"], holiday_weights(head["IsHoliday"])) \
        == pytest.approx(mean_absolute_error(head["Weekly_Sales"], head["naive"],
                                             sample_weight=np.where(head["IsHoliday"], 5, 1)))


@pytest.mark.full_data
def test_wmae_by_hand_on_four_real_rows(walmart_pairs):
    """Store 1, Dept 1, Feb 2011, predicted by the same weeks of 2010 (11 Feb is Super Bowl)."""
    rows = walmart_pairs[(walmart_pairs.Store == 1) & (walmart_pairs.Dept == 1)
                         & walmart_pairs.Date.between("2011-02-01", "2011-02-28")]
    assert rows["Weekly_Sales"].tolist() == [21665.76, 37887.17, 46845.87, 19363.83]
    assert rows["naive"].tolist() == [24924.50, 46039.49, 41595.55, 19403.54]
    assert rows["IsHoliday"].tolist() == [False, True, False, False]
    # (1*3258.74 + 5*8152.32 + 1*5250.32 + 1*39.71) / (1 + 5 + 1 + 1)
    expected = (3258.74 + 5 * 8152.32 + 5250.32 + 39.71) / 8
    assert expected == pytest.approx(6163.79625)
    got = wmae(rows["Weekly_Sales"], rows["naive"], holiday_weights(rows["IsHoliday"]))
    assert got == pytest.approx(expected, rel=1e-12)


def test_nwrmsle_by_hand_on_three_rows():
    y = [-3.0, 0.0, np.e - 1.0]      # actual -3 is clipped to 0
    p = [np.e - 1.0, -1.0, np.e - 1.0]   # prediction -1 is clipped to 0
    w = [1.25, 1.0, 1.0]          # first item perishable
    # log errors: ln(e) - ln(1) = 1, 0, 0  ->  sqrt(1.25 * 1 / 3.25)
    assert nwrmsle(y, p, w) == pytest.approx(np.sqrt(1.25 / 3.25), rel=1e-12)


def test_small_hand_values():
    assert mae([1, 2, 3], [2, 2, 5]) == 1.0
    assert rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    assert r2([1, 2, 3], [1, 2, 3]) == 1.0
    assert r2([2, 2, 2], [2, 2, 2]) == 1.0  # constant target, exact: scikit-learn's 1.0
    assert r2([2, 2, 2], [1, 2, 3]) == r2_score([2, 2, 2], [1, 2, 3]) == 0.0


def test_compute_metrics_has_every_metric_and_counts(synthetic):
    y, p, w = synthetic
    out = compute_metrics(y, p, w)
    assert list(out) == [*METRICS, "n", "weight_sum"]
    assert out["n"] == 500 and out["weight_sum"] == pytest.approx(w.sum())
    assert out["wmae"] == pytest.approx(wmae(y, p, w), rel=1e-12)
    assert out["nwrmsle"] == pytest.approx(nwrmsle(y, p, w), rel=1e-12)
    # mae, rmse and r2 are reported unweighted
    assert out["mae"] == pytest.approx(mae(y, p), rel=1e-12)
    assert out["rmse"] == pytest.approx(rmse(y, p), rel=1e-12)
    assert out["r2"] == pytest.approx(r2(y, p), rel=1e-12)
    assert all(type(v) in (int, float) for v in out.values())
    assert compute_metrics(y, p)["weight_sum"] == 500.0


@pytest.mark.parametrize("arg", ["y_true", "y_pred", "weight"])
def test_nan_names_the_argument_and_count(arg):
    args = {"y_true": [1.0, 2.0, 3.0, 4.0], "y_pred": [1.0, 2.0, 3.0, 4.0],
            "weight": [1.0, 1.0, 1.0, 1.0]}
    args[arg] = [1.0, np.nan, np.nan, 4.0]
    for fn in [*METRICS.values(), compute_metrics]:
        with pytest.raises(ValueError, match=rf"^{arg} has 2 NaN values out of 4 rows"):
            fn(args["y_true"], args["y_pred"], args["weight"])


def test_pandas_missing_values_are_nan():
    s = pd.Series([1.0, None, 3.0], dtype="Float64")
    with pytest.raises(ValueError, match="y_pred has 1 NaN"):
        mae([1.0, 2.0, 3.0], s)


@pytest.mark.parametrize("bad, match", [
    (([], []), "y_true is empty"),
    (([1.0], []), "y_pred is empty"),
    (([1.0, 2.0], [1.0]), "y_pred has 1 rows but y_true has 2"),
    (([1.0, 2.0], [1.0, 2.0], [1.0]), "weight has 1 rows"),
    (([1.0, 2.0], [1.0, 2.0], [1.0, -1.0]), "weight has 1 negative"),
    (([1.0, 2.0], [1.0, 2.0], [0.0, 0.0]), "weight sums to 0"),
    (([1.0, np.inf], [1.0, 2.0]), "y_true has 1 infinite"),
    ((["a", "b"], [1.0, 2.0]), "y_true must hold numbers"),
])
def test_bad_inputs_raise(bad, match):
    for fn in METRICS.values():
        with pytest.raises(ValueError, match=match):
            fn(*bad)


def test_holiday_weights():
    assert holiday_weights(pd.Series([True, False, True])).tolist() == [5.0, 1.0, 5.0]
    assert holiday_weights(np.array([0, 1]), weight=2.5).tolist() == [1.0, 2.5]
    with pytest.raises(ValueError, match="weight == 0"):
        holiday_weights([True], weight=0)
    with pytest.raises(ValueError, match="flags has 1 values that are not true/false"):
        holiday_weights([0, 2])
    with pytest.raises(ValueError, match="flags has 1 NaN"):
        holiday_weights([1.0, np.nan])


def test_public_api_is_all():
    assert sorted(ev.__all__) == sorted(set(ev.__all__))
    for name in ev.__all__:
        assert hasattr(ev, name), name
    public = {n for n in dir(ev) if not n.startswith("_")
              and not isinstance(getattr(ev, n), type(sys))
              and n not in ("annotations", "Any")}  # from __future__ / typing
    assert public == set(ev.__all__)


def test_no_sklearn_or_scipy_at_runtime():
    code = ("import sys, cd4ml.evaluation as e; import pandas as pd; "
            "f = pd.DataFrame({'y': [1.0, 2.0], 'p': [1.0, 3.0], 's': [1, 2]}); "
            "e.evaluate(f, pred='p', target='y', slices=['s']); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
