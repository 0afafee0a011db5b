"""The flagship on the full Walmart data: split, baseline figure, gate, servable horizon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_project

import cd4ml
from cd4ml.pipeline.run import run_pipeline

pytestmark = [pytest.mark.full_data, pytest.mark.slow]
#: fewer trees than the example's 600 at 0.05; with so few, Dept 54 (small sales) comes
#: out more than 50 % worse than seasonal naive and the gate refuses, so the fallback
#: (chosen on validation) lets such departments give way
QUICK = ["models.candidates.0.params.n_estimators=150",
         "models.candidates.0.params.learning_rate=0.1",
         "models.candidates.0.fallback={by: [Dept], to: seasonal_naive, blend: true}",
         "models.candidates.1.params.n_estimators=4"]


@pytest.fixture(scope="module")
def outcome(full_walmart: Path, tmp_path_factory: pytest.TempPathFactory):
    proj = make_project(tmp_path_factory.mktemp("full"), full_walmart)
    return proj, run_pipeline(proj, QUICK)


def test_seasonal_naive_matches_an_independent_computation(outcome, full_walmart) -> None:
    """Holdout = weeks after 2012-01-27; same week last year, else the series median of
    the weeks before the holdout, else the department median."""
    _, out = outcome
    tr = pd.read_csv(full_walmart / "train.csv.zip", parse_dates=["Date"])
    before = tr[tr.Date <= "2012-01-27"]
    hold = tr[tr.Date > "2012-01-27"].copy()
    last = tr[["Store", "Dept", "Date", "Weekly_Sales"]].assign(Date=tr.Date + pd.Timedelta(weeks=52))
    hold = hold.merge(last.rename(columns={"Weekly_Sales": "sn"}), on=["Store", "Dept", "Date"],
                      how="left")
    ser = before.groupby(["Store", "Dept"]).Weekly_Sales.median().rename("ser")
    dep = before.groupby("Dept").Weekly_Sales.median().rename("dep")
    hold = hold.join(ser, on=["Store", "Dept"]).join(dep, on="Dept")
    pred = hold.sn.fillna(hold.ser).fillna(hold.dep).fillna(before.Weekly_Sales.median())
    w = np.where(hold.IsHoliday, 5.0, 1.0)
    wmae = float(np.sum(w * np.abs(hold.Weekly_Sales - pred)) / w.sum())
    assert out.metrics["holdout.seasonal_naive.wmae"] == pytest.approx(wmae, rel=1e-7)  # features are float32
    assert 1750 < wmae < 1850  # the reference point measured on this split: 1,800


def test_gated_model_beats_seasonal_naive_and_serves_after_the_data(outcome) -> None:
    proj, out = outcome
    assert out.gate["passed"], out.gate
    assert out.metrics["holdout.selected.wmae"] < out.metrics["holdout.seasonal_naive.wmae"]
    model = cd4ml.load_model("walmart-weekly-sales@production", project_dir=proj)
    assert str(model.history_end.date()) == "2012-10-26"
    assert str(model.last.date()) == "2013-07-26"  # history end + 39 weeks
    pred = model.predict([{"store": 20, "dept": 92, "date": "2013-07-26"},
                          {"store": 1, "dept": 1, "date": "2010-02-05"}])
    assert np.isfinite(pred["prediction"]).all()
