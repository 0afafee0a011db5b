"""Multivariate drift by PCA reconstruction error: the errors equal scikit-learn's own
reconstruction (transform, inverse_transform) of the same encoded rows; on ACS the years
after training stay inside the reference's normal range and an aged population leaves it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from cd4ml.monitoring.multivariate import VARIANCE, Reconstruction

from acs_data import ACS_INPUTS  # noqa: E402

KINDS = {c: "categorical" for c in ACS_INPUTS[1:]}


@pytest.fixture(scope="module")
def acs(acs_years: pd.DataFrame) -> pd.DataFrame:
    return acs_years  # every ACS row, all years (conftest)


@pytest.fixture(scope="module")
def fitted(acs) -> Reconstruction:
    return Reconstruction.fit(acs.loc[acs.year == 2015, ACS_INPUTS], KINDS)


def test_errors_equal_scikit_learns_reconstruction(acs, fitted) -> None:
    train = acs.loc[acs.year == 2015, ACS_INPUTS]
    later = acs.loc[acs.year == 2018, ACS_INPUTS].head(5000)
    # the encoding written out independently: category -> its share in training
    enc = lambda f: np.column_stack([  # noqa: E731
        f[c].map(train[c].value_counts(normalize=True)).fillna(0).to_numpy(float)
        if c in KINDS else f[c].to_numpy(float) for c in ACS_INPUTS])
    X = enc(train)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    pca = PCA(n_components=VARIANCE, svd_solver="full").fit((X - mu) / sd)
    Z = (enc(later) - mu) / sd
    want = np.sqrt(((Z - pca.inverse_transform(pca.transform(Z))) ** 2).sum(axis=1))
    np.testing.assert_allclose(fitted.errors(later), want, rtol=1e-6, atol=1e-9)
    assert len(fitted.components) == pca.n_components_


def test_later_years_stay_normal_and_an_aged_population_does_not(acs, fitted) -> None:
    for year in (2016, 2017, 2018):
        got = fitted.judge(acs.loc[acs.year == year, ACS_INPUTS])
        assert got["state"] == "ok", (year, got)
    aged = acs.loc[acs.year == 2018, ACS_INPUTS].assign(
        AGEP=lambda d: (d.AGEP + 10).clip(upper=99))
    got = fitted.judge(aged)
    assert got["state"] == "drifted" and got["error"] > got["upper"]
    assert fitted.judge(aged.head(5))["state"] == "insufficient"
    back = Reconstruction.from_dict(fitted.to_dict())
    assert back.error(aged) == pytest.approx(fitted.error(aged), rel=1e-12)
    unseen = aged.head(100).assign(SCHL=-1, MIL=None)  # never seen, missing: still a number
    assert np.isfinite(fitted.errors(unseen)).all()
