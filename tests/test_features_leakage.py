"""No future value can reach a feature: perturb everything after d - horizon, recompute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import DataConfig, FeaturesConfig
from cd4ml.features import build_panel, compute_features, spec_from_config


def _frames(seed: int = 0, n_dates: int = 160):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2010-02-05", periods=n_dates, freq="7D")
    rows = [(s, d, t, float(rng.normal(1000, 200)), bool(rng.random() < 0.1))
            for s in (1, 2) for d in (1, 2) for t in dates]
    sales = pd.DataFrame(rows, columns=["Store", "Dept", "Date", "Weekly_Sales", "IsHoliday"])
    feats = pd.DataFrame([(s, t, float(rng.normal(60, 10))) for s in (1, 2) for t in dates],
                         columns=["Store", "Date", "Temperature"])
    stores = pd.DataFrame({"Store": [1, 2], "Type": ["A", "B"], "Size": [100, 200]})
    return {"sales": sales, "features": feats, "stores": stores}


DATA = DataConfig(sources={"sales": {"path": "s"}, "features": {"path": "f"},
                           "stores": {"path": "st"}}, main="sales",
                  joins=[{"source": "stores", "on": ["Store"]},
                         {"source": "features", "on": ["Store", "Date"]}],
                  target="Weekly_Sales", time="Date", series=["Store", "Dept"])
FEATS = FeaturesConfig(horizon=39, lags=[39, 52], rolling_windows=[4, 13, 52],
                       rolling_stats=["mean", "std"], static=["Type", "Size"],
                       categorical=["Type"],
                       covariates={"IsHoliday": "known_ahead", "Temperature": "observed"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_future_values_never_reach_a_feature(seed: int) -> None:
    frames = _frames(seed)
    panel = build_panel(frames, DATA, FEATS)
    spec = spec_from_config(DATA, FEATS, panel)
    base = compute_features(panel, spec)
    rng = np.random.default_rng(seed + 100)
    for d in rng.choice(panel["Date"].unique(), size=5, replace=False):
        d = pd.Timestamp(d)
        cutoff = d - pd.Timedelta(weeks=FEATS.horizon)
        future = panel["Date"] > cutoff
        poisoned = panel.copy()
        poisoned.loc[future, "Weekly_Sales"] = 1e9
        poisoned.loc[future, "Temperature"] = -1e9
        again = compute_features(poisoned, spec)
        at_d = (panel["Date"] == d).to_numpy()
        pd.testing.assert_frame_equal(base[at_d], again[at_d])


def test_a_poisoned_value_does_show_up_once_known() -> None:
    """The check above has teeth: a value at exactly d - horizon is used."""
    panel = build_panel(_frames(), DATA, FEATS)
    spec = spec_from_config(DATA, FEATS, panel)
    d = panel["Date"].iloc[100]
    known = panel["Date"] == d - pd.Timedelta(weeks=39)
    poisoned = panel.copy()
    poisoned.loc[known, "Weekly_Sales"] = 1e9
    at_d = (panel["Date"] == d).to_numpy()
    assert (compute_features(poisoned, spec)[at_d]["lag_39"] == np.float32(1e9)).all()


def test_lag_shorter_than_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="lag 4 < horizon 39"):
        FeaturesConfig(horizon=39, lags=[4])


def test_panel_extends_by_horizon_with_known_ahead_covariates() -> None:
    frames = _frames(n_dates=100)
    last = frames["sales"]["Date"].max()
    extra = pd.DataFrame({"Store": [1], "Date": [last + pd.Timedelta(weeks=3)],
                          "Temperature": [50.0]})
    frames["features"] = pd.concat([frames["features"], extra])
    panel = build_panel(frames, DATA, FEATS)
    assert panel["Date"].max() == last + pd.Timedelta(weeks=39)
    assert panel["Weekly_Sales"][panel["Date"] > last].isna().all()
    assert len(panel) == 4 * (100 + 39)
