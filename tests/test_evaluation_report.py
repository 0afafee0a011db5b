"""cd4ml.evaluation.report: sliced metrics against a plain per-group loop with scikit-learn."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    mean_absolute_error, mean_squared_error, mean_squared_log_error, r2_score,
)

from cd4ml.config import EvaluationConfig
from cd4ml.evaluation import compare, evaluate, evaluation_weights, holiday_weights


def _data_dir() -> Path:
    env = os.environ.get("CD4ML_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


WALMART = _data_dir() / "walmart"
HOLDOUT_WEEKS = 39


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    """The last 39 weeks of Walmart with a seasonal-naive and a smoothed prediction."""
    if not (WALMART / "train.csv.zip").is_file():
        pytest.skip(f"Walmart data not found in {WALMART}; set CD4ML_SHARED_DATA to the "
                    "folder holding walmart/train.csv.zip and walmart/stores.csv")
    df = pd.read_csv(WALMART / "train.csv.zip", parse_dates=["Date"])
    stores = pd.read_csv(WALMART / "stores.csv")
    prev = df[["Store", "Dept", "Date", "Weekly_Sales"]].rename(
        columns={"Weekly_Sales": "naive"})
    prev["Date"] = prev["Date"] + pd.Timedelta(weeks=52)
    full = df.merge(prev, on=["Store", "Dept", "Date"]).merge(stores, on="Store")
    first = np.sort(full["Date"].unique())[-HOLDOUT_WEEKS]
    out = full[full["Date"] >= first].reset_index(drop=True)
    out["ahead"] = (out["Date"] - first).dt.days // 7 + 1
    out["w"] = holiday_weights(out["IsHoliday"])
    out["blend"] = 0.8 * out["naive"] + 0.2 * out.groupby(["Store", "Dept"])[
        "naive"].transform("mean")
    assert len(out) > 100_000 and out.groupby(["Store", "Dept"]).ngroups > 3000
    return out


def _reference(g: pd.DataFrame, pred: str) -> dict[str, float]:
    y, p, w = g["Weekly_Sales"], g[pred], g["w"]
    return {
        "wmae": mean_absolute_error(y, p, sample_weight=w),
        "mae": mean_absolute_error(y, p),
        "rmse": np.sqrt(mean_squared_error(y, p)),
        "r2": r2_score(y, p) if len(g) > 1 else None,
        "nwrmsle": np.sqrt(mean_squared_log_error(y.clip(lower=0), p.clip(lower=0),
                                                  sample_weight=w)),
        "n": len(g), "weight_sum": w.sum(),
    }


def _assert_row(got: dict, ref: dict) -> None:
    for key, value in ref.items():
        if value is not None:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


@pytest.mark.full_data
def test_slices_and_horizon_match_a_per_group_loop(holdout):
    rep = evaluate(holdout, pred="naive", target="Weekly_Sales", weight="w",
                   slices=["Store", "Dept", "Type"], horizon_col="ahead")
    _assert_row(rep["overall"], _reference(holdout, "naive"))
    total = holdout["w"].sum()
    for col in ["Store", "Dept", "Type"]:
        groups = list(holdout.groupby(col))
        assert [r["value"] for r in rep["slices"][col]] == [k for k, _ in groups]
        for row, (_, g) in zip(rep["slices"][col], groups):
            _assert_row(row, _reference(g, "naive"))
            assert row["weight_share"] == pytest.approx(g["w"].sum() / total, rel=1e-12)
    assert sum(r["weight_share"] for r in rep["slices"]["Type"]) == pytest.approx(1.0)
    steps = list(holdout.groupby("ahead"))
    assert [h["periods_ahead"] for h in rep["by_horizon"]] == list(range(1, 40))
    for row, (_, g) in zip(rep["by_horizon"], steps):
        _assert_row(row, _reference(g, "naive"))


@pytest.mark.full_data
def test_report_is_strict_json(holdout):
    rep = evaluate(holdout, pred="blend", target="Weekly_Sales", weight="w",
                   slices=["Type", "IsHoliday"], horizon_col="ahead")
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep
    assert [r["value"] for r in rep["slices"]["IsHoliday"]] == [False, True]


@pytest.mark.full_data
def test_full_holdout_is_fast(holdout):
    evaluate(holdout, pred="naive", target="Weekly_Sales", weight="w", slices=["Type"])
    start = time.perf_counter()
    for pred in ["naive", "blend"]:
        evaluate(holdout, pred=pred, target="Weekly_Sales", weight="w",
                 slices=["Store", "Dept", "Type"], horizon_col="ahead")
    per_model = (time.perf_counter() - start) / 2
    assert per_model < 1.0, f"{per_model:.2f} s per model on {len(holdout):,} rows"


def test_slice_values_missing_categorical_and_dates():
    frame = pd.DataFrame({
        "y": [1.0, 2.0, 3.0, 4.0], "p": [1.0, 2.0, 2.0, 6.0],
        "cat": pd.Categorical(["b", "a", "b", None], categories=["a", "b", "unused"]),
        "day": pd.to_datetime(["2012-01-06", "2012-01-06", "2012-01-13", "2012-01-13"]),
        "store": [3, np.nan, 3, 3],
    }, index=[10, 11, 12, 13])
    rep = evaluate(frame, pred="p", target="y", slices=["cat", "day", "store"])
    cat = rep["slices"]["cat"]
    assert [(r["value"], r["n"], r["mae"]) for r in cat] == [
        ("a", 1, 0.0), ("b", 2, 0.5), (None, 1, 2.0)]
    assert [r["value"] for r in rep["slices"]["day"]] == ["2012-01-06T00:00:00",
                                                           "2012-01-13T00:00:00"]
    assert [(r["value"], r["n"]) for r in rep["slices"]["store"]] == [(3.0, 3), (None, 1)]
    assert cat[0]["r2"] == 1.0  # one exact row: constant target predicted exactly
    json.dumps(rep, allow_nan=False)


def test_zero_weight_slice_has_no_weighted_metrics():
    frame = pd.DataFrame({"y": [1.0, 2.0], "p": [2.0, 2.0], "w": [0.0, 1.0], "s": [1, 2]})
    rep = evaluate(frame, pred="p", target="y", weight="w", slices=["s"])
    first = rep["slices"]["s"][0]
    assert first["wmae"] is None and first["nwrmsle"] is None and first["mae"] == 1.0
    assert first["weight_share"] == 0.0
    json.dumps(rep, allow_nan=False)


def test_errors_name_the_column():
    frame = pd.DataFrame({"y": [1.0, 2.0, 3.0], "p": [1.0, np.nan, 3.0],
                          "h": [True, False, True], "s": [1, 1, 2]})
    with pytest.raises(ValueError, match="prediction column 'p' has 1 NaN values out of 3"):
        evaluate(frame, pred="p", target="y", slices=["s"])
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] not in the frame"):
        evaluate(frame, pred="y", target="y", slices=["nope"])
    with pytest.raises(ValueError, match="holds true/false flags.*holiday_weights"):
        evaluate(frame, pred="y", target="y", weight="h")
    with pytest.raises(ValueError, match="repeats a column"):
        evaluate(frame, pred="y", target="y", slices=["s", "s"])
    with pytest.raises(ValueError, match="target column 'y' is empty"):
        evaluate(frame.iloc[:0], pred="y", target="y")
    with pytest.raises(ValueError, match="whole numbers"):
        evaluate(frame.assign(k=[1.5, 2, 3]), pred="y", target="y", horizon_col="k")


def test_evaluation_weights_from_config():
    frame = pd.DataFrame({"IsHoliday": [False, True]})
    assert evaluation_weights(frame, EvaluationConfig()) is None
    w = evaluation_weights(frame, EvaluationConfig(weight_column="IsHoliday", weight=3.0))
    assert w.tolist() == [1.0, 3.0]


@pytest.mark.full_data
def test_compare_leaderboard(holdout):
    reports = {name: evaluate(holdout, pred=name, target="Weekly_Sales", weight="w")
               for name in ["naive", "blend"]}
    reports["perfect"] = evaluate(holdout, pred="Weekly_Sales", target="Weekly_Sales",
                                  weight="w")
    board = compare(reports, "wmae", baselines=["naive", "blend"])
    assert [r["model"] for r in board] == sorted(reports, key=lambda n: reports[n][
        "overall"]["wmae"])
    assert [r["rank"] for r in board] == [1, 2, 3]
    assert board[0]["model"] == "perfect" and board[0]["improvement_pct"] == 100.0
    best = board[1]
    assert best["is_baseline"] and best["improvement_pct"] == 0.0
    assert best["reference"] == best["model"]
    worst = board[2]
    expected = (best["wmae"] - worst["wmae"]) / best["wmae"] * 100
    assert worst["improvement_pct"] == pytest.approx(expected)
    r2_board = compare(reports, "r2")
    assert r2_board[0]["model"] == "perfect" and r2_board[0]["r2"] == 1.0
    with pytest.raises(ValueError, match="baselines \\['x'\\] are not among"):
        compare(reports, "wmae", baselines=["x"])
    with pytest.raises(ValueError, match="metric == 'auc'"):
        compare(reports, "auc")
