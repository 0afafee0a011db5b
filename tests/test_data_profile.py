"""cd4ml.data.profile on synthetic frames, each statistic against numpy/scipy/Counter."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cd4ml.data.profile import HISTOGRAM_BINS, QUANTILES, TOP_VALUES, profile


def check_numeric(entry: dict[str, Any], values: np.ndarray) -> None:
    """Compare a numeric column's profile with independent computations (shared helper)."""
    finite = values[np.isfinite(values)]
    with warnings.catch_warnings():  # scipy warns about skew of a constant column
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = stats.describe(finite)
    assert entry["min"] == pytest.approx(ref.minmax[0])
    assert entry["max"] == pytest.approx(ref.minmax[1])
    assert entry["mean"] == pytest.approx(ref.mean, rel=1e-12, abs=1e-12)
    if ref.nobs > 1:
        assert entry["std"] == pytest.approx(math.sqrt(ref.variance), rel=1e-10, abs=1e-12)
    q = np.quantile(finite, list(QUANTILES.values()))
    assert list(entry["quantiles"]) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert list(entry["quantiles"].values()) == pytest.approx(q)
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    assert entry["histogram"]["counts"] == counts.tolist()
    assert entry["histogram"]["edges"] == pytest.approx(edges.tolist())
    assert sum(entry["histogram"]["counts"]) == len(finite)
    assert entry["n_negative"] == int(np.sum(values < 0))
    assert entry["n_zero"] == int(np.sum(values == 0))
    assert entry["n_unique"] == len(set(values.tolist()))


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    n = 5_000
    y = rng.normal(100, 30, n)
    y[rng.choice(n, 250, replace=False)] = np.nan
    return pd.DataFrame({
        "y": y,
        "k": rng.integers(-5, 6, n),
        "kind": rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05]),
        "many": [f"v{i}" for i in rng.integers(0, 40, n)],
        "flag": rng.random(n) < 0.2,
        "d": pd.to_datetime("2010-02-05") + pd.to_timedelta(rng.integers(0, 100, n) * 7, "D"),
    })


def test_numeric_columns_match_scipy_and_numpy(frame: pd.DataFrame) -> None:
    p = profile(frame)
    assert json.loads(json.dumps(p, allow_nan=False)) == p  # plain JSON, no NaN
    for col in ("y", "k"):
        entry = p["columns"][col]
        values = frame[col].to_numpy(dtype=float)
        nulls = int(np.isnan(values).sum())
        assert entry["count"] == len(values) - nulls and entry["nulls"] == nulls
        assert entry["null_fraction"] == pytest.approx(nulls / len(values))
        check_numeric(entry, values[~np.isnan(values)])
    assert p["columns"]["y"]["type"] == "float" and p["columns"]["k"]["type"] == "int"
    assert p["rows"] == len(frame) and p["version"] == 1


def test_strings_and_bools_top_values(frame: pd.DataFrame) -> None:
    p = profile(frame)
    for col in ("kind", "many", "flag"):
        entry, counter = p["columns"][col], Counter(frame[col].tolist())
        assert entry["n_unique"] == len(counter)
        expected = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_VALUES]
        assert [(t["value"], t["count"]) for t in entry["top"]] == expected
        assert entry["n_other"] == len(frame) - sum(c for _, c in expected)
    assert p["columns"]["flag"]["type"] == "bool"
    assert len(p["columns"]["many"]["top"]) == TOP_VALUES


def test_dates(frame: pd.DataFrame) -> None:
    entry = profile(frame)["columns"]["d"]
    assert entry["type"] == "date"
    assert entry["min"] == frame["d"].min().date().isoformat()
    assert entry["max"] == frame["d"].max().date().isoformat()
    assert entry["n_unique"] == len(set(frame["d"].tolist()))


def test_edge_cases_stay_json() -> None:
    df = pd.DataFrame({
        "const": [3.0, 3.0, 3.0],
        "one": [np.nan, 7.0, np.nan],
        "empty": [np.nan, np.nan, np.nan],
        "inf": [1.0, np.inf, -2.0],
        "s": ["x", None, "x"],
    })
    p = profile(df)
    json.dumps(p, allow_nan=False)
    c = p["columns"]
    check_numeric(c["const"], df["const"].to_numpy())
    assert c["const"]["std"] == 0.0 and c["const"]["histogram"]["counts"][10] == 3
    assert c["one"]["std"] is None and c["one"]["mean"] == 7.0
    assert c["empty"]["mean"] is None and c["empty"]["histogram"] is None
    assert c["empty"]["null_fraction"] == 1.0
    assert c["inf"]["n_infinite"] == 1 and c["inf"]["max"] == 1.0
    check_numeric(c["inf"], df["inf"].to_numpy())
    assert c["s"]["top"] == [{"value": "x", "count": 2}] and c["s"]["nulls"] == 1


def test_empty_frame() -> None:
    p = profile(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    assert p["rows"] == 0 and p["columns"]["a"]["null_fraction"] == 0.0
