"""Real rows for the evaluation tests: ACS employment (Massachusetts), wine (multiclass).

``acs_scored()`` fits a small LightGBM classifier on the 2015 rows and scores the 2016
rows (once per test process); ``wine_scored()`` a logistic regression on half of
scikit-learn's bundled wine data, scored on the other half.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
_BASE = os.environ.get("CD4ML_SHARED_DATA")
ACS_FILE = (Path(_BASE) if _BASE else ROOT.parent / "shared" / "data") / \
    "acs-employment-ma" / "employment.parquet"
ACS_INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
              "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


@dataclass(frozen=True)
class Scored:
    frame: pd.DataFrame  #: the scored rows, index 0..n-1
    y: np.ndarray  #: class indices
    proba: np.ndarray  #: (n, k)


def require_acs() -> Path:
    if not ACS_FILE.is_file():
        pytest.skip(f"ACS employment data not found at {ACS_FILE} (set CD4ML_SHARED_DATA; "
                    "SOURCES.md says how to rebuild it from the nannyml wheel)")
    return ACS_FILE


@functools.lru_cache(maxsize=1)
def acs_scored() -> Scored:
    """LightGBM (50 trees, 31 leaves, seed 0) fitted on 2015, its probabilities on 2016."""
    import lightgbm as lgb

    data = pd.read_parquet(require_acs())
    train, hold = data[data.year == 2015], data[data.year == 2016].reset_index(drop=True)
    model = lgb.LGBMClassifier(n_estimators=50, num_leaves=31, learning_rate=0.15,
                               n_jobs=1, random_state=0, verbose=-1)
    model.fit(train[ACS_INPUTS], train["employed"])
    return Scored(hold, hold["employed"].to_numpy(), model.predict_proba(hold[ACS_INPUTS]))


@functools.lru_cache(maxsize=1)
def wine_scored() -> Scored:
    """Logistic regression on a stratified half of load_wine, scored on the other half."""
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True, as_frame=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, stratify=y,
                                              random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000))
    model.fit(X_tr, y_tr)
    frame = X_te.reset_index(drop=True)
    return Scored(frame, y_te.to_numpy(), model.predict_proba(X_te))
