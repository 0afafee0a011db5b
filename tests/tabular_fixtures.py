"""Real rows for the tabular tests, and models fitted on them by the adapters.

ACS employment (Massachusetts, /work/shared/data) with a schema declaring each column's
PUMS codes and AGEP 0-99; scikit-learn's bundled wine (multiclass, float inputs) and
diabetes (regression) data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from cd4ml.config import ModelSpec
from cd4ml.data.schema import Column, Schema, infer_schema
from cd4ml.features.tabular import TabularTransform
from cd4ml.registry.predictors import Predictor

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


def fit(transform: TabularTransform, frame: pd.DataFrame, type_: str, **params: object,
        ) -> Predictor:
    """A model of ``type_`` fitted by the adapters on the encoded ``frame``."""
    from cd4ml.training.fit import fit_model

    spec = transform.spec
    X = pd.DataFrame(transform.matrix(frame), columns=transform.feature_names)
    return fit_model(ModelSpec(name=type_, type=type_, params=params), X,
                     spec.encode_target(frame[spec.target]), task=spec.task,
                     categorical=transform.categorical, classes=spec.classes)
