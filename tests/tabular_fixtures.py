"""Real rows and real estimators for the tabular tests.

ACS employment (Massachusetts, /work/shared/data) with a schema declaring each column's
PUMS codes and AGEP 0-99; scikit-learn's bundled wine (multiclass, float inputs) and
diabetes (regression) data. The predictors here are TEST-ONLY wrappers of real fitted
estimators (a LightGBM booster, scikit-learn linear models saved as JSON of their
fitted coefficients), standing in for the model adapters until those land.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cd4ml.data.schema import Column, Schema, infer_schema
from cd4ml.registry.predictors import PREDICTORS, Predictor

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY",
          "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
#: the ACS PUMS codes of each categorical column (data dictionary; SCHL 0 = under 3 years)
PUMS = {"SCHL": list(range(0, 25)), "MAR": [1, 2, 3, 4, 5], "RELP": list(range(0, 18)),
        "DIS": [1, 2], "ESP": list(range(0, 9)), "CIT": [1, 2, 3, 4, 5], "MIG": [0, 1, 2, 3],
        "MIL": [0, 1, 2, 3, 4], "ANC": [1, 2, 3, 4], "NATIVITY": [1, 2], "DEAR": [1, 2],
        "DEYE": [1, 2], "DREM": [0, 1, 2], "SEX": [1, 2], "RAC1P": list(range(1, 10))}


def acs_path() -> Path:
    base = os.environ.get("CD4ML_SHARED_DATA")
    return (Path(base) if base else ROOT.parent / "shared" / "data") \
        / "acs-employment-ma" / "employment.parquet"


@pytest.fixture(scope="session")
def acs() -> pd.DataFrame:
    path = acs_path()
    if not path.is_file():
        pytest.skip(f"ACS employment data not found at {path} (set CD4ML_SHARED_DATA; "
                    f"SOURCES.md says how to rebuild it from the nannyml 0.13.1 wheel)")
    return pd.read_parquet(path)


def acs_schema() -> Schema:
    cols = [Column(name="id", type="int", min=0), Column(name="AGEP", type="float", min=0, max=99)]
    cols += [Column(name=c, type="int", categories=PUMS[c]) for c in INPUTS[1:]]
    cols += [Column(name="year", type="int"), Column(name="employed", type="int",
                                                      categories=[0, 1])]
    return Schema(name="acs", columns=cols, unique_keys=["id"])


def wine() -> tuple[pd.DataFrame, Schema]:
    """The wine data (178 rows, 13 float inputs, 3 classes) and its inferred schema."""
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    df.columns = [c.replace("/", "_") for c in df.columns]
    return df, infer_schema(df, name="wine")


def diabetes() -> tuple[pd.DataFrame, Schema]:
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True, scaled=False).frame
    return df, infer_schema(df, name="diabetes")


class BoosterClassifier(Predictor):
    """TEST ONLY: a binary LightGBM booster answering (n, 2) probabilities [1 - p, p]."""

    model_type = "test_booster_classifier"

    def __init__(self, booster: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.booster = booster

    def _raw(self, X: np.ndarray) -> np.ndarray:
        p = self.booster.predict(X, num_threads=1)
        return np.column_stack([1.0 - p, p])

    def to_files(self) -> dict[str, bytes]:
        return {"model.txt": self.booster.model_to_string().encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> BoosterClassifier:
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=files["model.txt"].decode()),
                   feature_names=meta["feature_names"])


class LinearJSON(Predictor):
    """TEST ONLY: a fitted scikit-learn linear model saved as JSON of its coefficients;
    probabilities (n, k) for LogisticRegression, values (n,) for LinearRegression."""

    model_type = "test_linear_json"

    def __init__(self, estimator: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.estimator = estimator

    def _raw(self, X: np.ndarray) -> np.ndarray:
        est = self.estimator
        return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)

    def to_files(self) -> dict[str, bytes]:
        est = self.estimator
        body = {"kind": type(est).__name__, "coef": np.asarray(est.coef_).tolist(),
                "dtype": str(np.asarray(est.coef_).dtype),
                "intercept": np.asarray(est.intercept_).tolist(),
                "classes": getattr(est, "classes_", np.array([])).tolist()}
        return {"linear.json": json.dumps(body).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict[str, Any]) -> LinearJSON:
        from sklearn.linear_model import LinearRegression, LogisticRegression

        body = json.loads(files["linear.json"])
        est = LogisticRegression() if body["kind"] == "LogisticRegression" else LinearRegression()
        dtype = np.dtype(body["dtype"])  # float32 coefficients stay float32 (exact in JSON)
        est.coef_ = np.asarray(body["coef"], dtype)
        est.intercept_ = np.asarray(body["intercept"], dtype)
        est.n_features_in_ = est.coef_.shape[-1]
        if body["classes"]:
            est.classes_ = np.asarray(body["classes"])
        return cls(est, feature_names=meta["feature_names"])


@pytest.fixture
def test_predictors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let load_predictor read the test-only predictors (for this test only)."""
    monkeypatch.setitem(PREDICTORS, BoosterClassifier.model_type, BoosterClassifier)
    monkeypatch.setitem(PREDICTORS, LinearJSON.model_type, LinearJSON)
