"""cd4ml.data on the real Walmart files (skipped when ../shared/data/walmart is absent)."""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cd4ml.config import SourceConfig
from cd4ml.data import (
    file_fingerprint, group_split, infer_schema, load_schema, make_snapshot, profile,
    read_snapshot_bytes, read_source, save_schema, time_windows, validate,
)
from cd4ml.data.profile import HISTOGRAM_BINS, QUANTILES

SHARED = Path(os.environ.get("CD4ML_SHARED_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data")
WALMART = SHARED / "walmart"

pytestmark = [
    pytest.mark.full_data,
    pytest.mark.skipif(not (WALMART / "train.csv.zip").is_file(),
                       reason=f"Walmart data not found at {WALMART} (set CD4ML_SHARED_DATA to "
                              f"the folder holding walmart/; see ../shared/data/SOURCES.md)"),
]
KEYS = ["Store", "Dept", "Date"]


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return read_source("sales", SourceConfig(path="train.csv.zip", dates=["Date"]), WALMART)


def test_read_train(sales: pd.DataFrame) -> None:
    assert sales.shape == (421_570, 5)
    assert list(sales.columns) == ["Store", "Dept", "Date", "Weekly_Sales", "IsHoliday"]
    assert int((sales["Weekly_Sales"] < 0).sum()) == 1_285
    assert sales.attrs["parse_errors"] == {}
    assert (sales["Date"].min(), sales["Date"].max()) == (pd.Timestamp("2010-02-05"),
                                                          pd.Timestamp("2012-10-26"))
    assert sales.groupby(["Store", "Dept"]).ngroups == 3_331


def test_schema_inference_round_trip_and_fast_validation(sales: pd.DataFrame,
                                                         tmp_path: Path) -> None:
    schema = infer_schema(sales, name="sales", keys=KEYS)
    assert schema.unique_keys == KEYS
    types = {c.name: (c.type, c.nullable, c.min) for c in schema.columns}
    assert types == {"Store": ("int", False, 0), "Dept": ("int", False, 0),
                     "Date": ("date", False, None), "Weekly_Sales": ("float", False, None),
                     "IsHoliday": ("bool", False, None)}
    save_schema(schema, tmp_path / "sales.yaml")
    schema = load_schema(tmp_path / "sales.yaml")

    start = time.perf_counter()
    report = validate(sales, schema)
    elapsed = time.perf_counter() - start
    assert report.ok, report.render()
    assert elapsed < 1.0, f"validating 421,570 rows took {elapsed:.2f}s"

    strict = schema.model_copy(update={"columns": [
        c.model_copy(update={"min": 0}) if c.name == "Weekly_Sales" else c
        for c in schema.columns]})
    low = validate(sales, strict).failures
    assert [(f.column, f.check, f.count) for f in low] == [("Weekly_Sales", "min", 1_285)]
    assert len(low[0].examples) == 5 and all(e["value"] < 0 for e in low[0].examples)


def test_profile_against_scipy_and_numpy(sales: pd.DataFrame) -> None:
    p = profile(sales)
    for col in ("Weekly_Sales", "Store", "Dept"):
        entry, values = p["columns"][col], sales[col].to_numpy(dtype=float)
        ref = stats.describe(values)
        assert entry["count"] == ref.nobs == 421_570 and entry["nulls"] == 0
        assert (entry["min"], entry["max"]) == pytest.approx(ref.minmax)
        assert entry["mean"] == pytest.approx(ref.mean, rel=1e-12)
        assert entry["std"] == pytest.approx(math.sqrt(ref.variance), rel=1e-10)
        assert list(entry["quantiles"].values()) == pytest.approx(
            np.quantile(values, list(QUANTILES.values())))
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        assert entry["histogram"]["counts"] == counts.tolist()
        assert entry["histogram"]["edges"] == pytest.approx(edges.tolist())
        assert entry["n_negative"] == int((values < 0).sum())
        assert entry["n_zero"] == int((values == 0).sum())
    assert p["columns"]["Weekly_Sales"]["n_negative"] == 1_285
    assert p["columns"]["Store"]["n_unique"] == 45 and p["columns"]["Dept"]["n_unique"] == 81
    hol = p["columns"]["IsHoliday"]
    assert hol["n_unique"] == 2
    assert {t["value"]: t["count"] for t in hol["top"]} == \
        sales["IsHoliday"].value_counts().to_dict()
    date = p["columns"]["Date"]
    assert (date["min"], date["max"], date["n_unique"]) == ("2010-02-05", "2012-10-26", 143)


def test_time_windows_on_walmart(sales: pd.DataFrame) -> None:
    w = time_windows(sales["Date"], validation_periods=39, holdout_periods=39)
    assert w.holdout_start == pd.Timestamp("2012-02-03")  # i.e. after 2012-01-27
    assert w.validation_end == pd.Timestamp("2012-01-27")
    assert w.validation_start == pd.Timestamp("2011-05-06")
    assert w.train_end == pd.Timestamp("2011-04-29")
    d = sales["Date"]
    assert d[w.train].max() < d[w.validation].min() <= d[w.validation].max() \
        < d[w.holdout].min()
    assert (w.train.astype(int) + w.validation + w.holdout == 1).all()
    assert d[w.holdout].nunique() == 39 and d[w.validation].nunique() == 39


def test_group_split_on_walmart(sales: pd.DataFrame) -> None:
    keys = sales[["Store", "Dept"]]
    mask = group_split(keys, test_fraction=0.2, seed=0)
    per_group = pd.Series(mask).groupby([sales["Store"], sales["Dept"]])
    assert (per_group.nunique() == 1).all()
    assert 0.15 < per_group.first().mean() < 0.25
    assert (group_split(keys, test_fraction=0.2, seed=0) == mask).all()


def test_snapshot_and_fingerprint(sales: pd.DataFrame, tmp_path: Path) -> None:
    path = WALMART / "train.csv.zip"
    fp = file_fingerprint(path, tmp_path / "hashes.json")
    assert fp == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_fingerprint(path, tmp_path / "hashes.json") == fp
    snap = make_snapshot("sales", sales, fingerprint=fp)
    assert snap.id == fp and snap.rows == 421_570
    pd.testing.assert_frame_equal(read_snapshot_bytes(snap.data), sales)


def test_features_and_stores() -> None:
    feats = read_source("features", SourceConfig(path="features.csv", dates=["Date"]), WALMART)
    assert len(feats) == 8_190 and feats.attrs["parse_errors"] == {}
    schema = infer_schema(feats, name="features", keys=["Store", "Date"])
    assert schema.column("MarkDown1").nullable and schema.unique_keys == ["Store", "Date"]
    assert feats.loc[feats["Date"] < "2011-11-01", "MarkDown1"].isna().all()
    stores = read_source("stores", SourceConfig(path="stores.csv"), WALMART)
    assert infer_schema(stores, name="stores").column("Type").categories == ["A", "B", "C"]
