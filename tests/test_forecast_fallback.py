"""A forecast model gives way to seasonal naive per department where it lost on
validation: the weights against scikit-learn's weighted MAE slice by slice, the choice
carried to the holdout and the bundle (serving answers the mix the gate judged), the
model alone's figures reported beside it, and the one-line refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, make_project

from cd4ml.training.fallback import BLEND_STEPS, choose_weights

FALLBACK = "models.candidates.0.fallback={by: [Dept]}"


def test_weights_are_the_per_slice_argmin_of_sklearns_weighted_mae() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(3)
    n = 600
    keys = pd.DataFrame({"Dept": rng.integers(0, 12, n).astype(float)})
    y = rng.gamma(2.0, 1000.0, n)
    w = np.where(rng.random(n) < 0.1, 5.0, 1.0)
    # a model good on some departments, poor on others; a baseline in between
    bias = np.where(keys.Dept.to_numpy() % 3 == 0, 900.0, 50.0)
    model = y + bias + rng.normal(0, 300, n)
    base = y + rng.normal(0, 500, n)
    for metric, blend, ref in (("wmae", True, mean_absolute_error),
                               ("mae", False, mean_absolute_error),
                               ("rmse", True, mean_squared_error)):
        steps = BLEND_STEPS if blend else (0.0, 1.0)
        got = {s.values[0]: s for s in choose_weights(keys, y, w, model, base, blend=blend,
                                                      metric=metric)}
        for d in sorted(keys.Dept.unique()):
            m = (keys.Dept == d).to_numpy()
            errs = [ref(y[m], a * model[m] + (1 - a) * base[m], sample_weight=w[m])
                    for a in steps]
            best = steps[int(np.flatnonzero(np.isclose(errs, min(errs)))[-1])]
            if best == 1.0:
                assert d not in got, (metric, d)
                continue
            s = got[d]
            assert s.model_weight == best and s.rows == int(m.sum()), (metric, d)
            assert s.mixed_error == pytest.approx(min(errs), rel=1e-9)
            assert s.model_error == pytest.approx(errs[-1], rel=1e-9)
            assert s.baseline_error == pytest.approx(errs[0], rel=1e-9)
    assert any(s.model_weight not in (0.0, 1.0) for s in
               choose_weights(keys, y, w, model, base, blend=True, metric="wmae"))


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", *args, "-p", str(proj)],
                          capture_output=True, text=True, timeout=600)


def _sets(*sets: str) -> list[str]:
    return sum((["--set", s] for s in (*FAST, *sets)), [])


def test_a_run_gives_way_where_validation_says_and_serves_the_mix(tmp_path: Path,
                                                                  sample_dir: Path) -> None:
    from cd4ml.pipeline.run import open_project
    from cd4ml.registry.blend import BlendPredictor
    from cd4ml.registry.loader import load_version

    proj = make_project(tmp_path, sample_dir)
    run = _cli(proj, "run", *_sets(FALLBACK))
    assert run.returncode == 0, run.stderr[-3000:]
    out = " ".join(run.stdout.split())
    assert "fallback: " in out and "give way to seasonal_naive (model weight, chosen on " \
        "validation)" in out and "the model alone: wmae" in out, out
    cfg, _, stores, _ = open_project(proj)
    with stores:
        runs = stores.metadata.list_runs(project=cfg.project)
        metrics = runs[0]["metrics"]
        cand = stores.metadata.cache_latest("candidate:lightgbm")["outputs"]["outputs"]
        servable = load_version(stores.metadata, stores.artifacts, cfg.models.name, 1,
                                forecast_table=False)
    fb = cand["report"]["fallback"]
    assert fb["chosen_on"] == "this window" and fb["by"] == ["Dept"] and fb["slices"]
    # selection ranks the recipe with its fallback; the model alone is reported beside it
    assert metrics["validation.lightgbm.wmae"] == pytest.approx(cand["metric"])
    assert metrics["validation.lightgbm.wmae_without_fallback"] == pytest.approx(
        fb["without_fallback"]["wmae"])
    assert cand["metric"] <= fb["without_fallback"]["wmae"] + 1e-6
    assert "holdout.selected.wmae_without_fallback" in metrics
    # the bundle holds the weights chosen on validation; serving answers the mix
    pred = servable.predictor
    assert isinstance(pred, BlendPredictor) and pred.weights == fb["weights"]
    X = servable.X
    a = pred.model_weight(X)
    expect = a * pred.model.predict(X) + (1 - a) * pred.baseline.predict(X)
    assert np.allclose(pred.predict(X), expect) and (a < 1).any()
    # saved and loaded back: the same answers
    from cd4ml.registry.predictors import load_predictor

    again = load_predictor(pred.to_files(), pred.meta())
    assert np.array_equal(again.predict(X), pred.predict(X))
    # no change: no work
    again_run = _cli(proj, "run", *_sets(FALLBACK))
    assert again_run.returncode == 0 and "nothing to do" in again_run.stdout


@pytest.mark.parametrize("setting, key, value", [
    ("models.candidates.0.fallback={by: [Aisle]}", "models.candidates.0.fallback.by.0",
     "'Aisle'"),
    ("models.candidates.0.fallback={by: [Dept], to: naive}",
     "models.candidates.0.fallback.to", "'naive'"),
])
def test_bad_fallbacks_are_one_line_and_store_nothing(tmp_path: Path, sample_dir: Path,
                                                      setting: str, key: str,
                                                      value: str) -> None:
    proj = make_project(tmp_path, sample_dir)
    bad = _cli(proj, "run", "--set", setting)
    line = bad.stderr.strip()
    assert bad.returncode != 0 and "\n" not in line and key in line and value in line, line
    assert not (proj / ".cd4ml").exists()


def test_a_tabular_fallback_is_refused(tmp_path: Path) -> None:
    from tabular_projects import wine_project

    proj = wine_project(tmp_path / "wine")
    bad = _cli(proj, "run", "--set", "models.candidates.0.fallback={by: [alcohol]}")
    line = bad.stderr.strip()
    assert bad.returncode != 0 and "\n" not in line and "forecasts only" in line, line


def test_metric_weights_off_fits_every_row_once(sample_dir: Path) -> None:
    """``params.metric_weights: false``: the same model as a fit without weights."""
    from cd4ml.config import ModelSpec
    from cd4ml.errors import ModelError
    from cd4ml.training.fit import fit_model

    tr = pd.read_csv(sample_dir / "train.csv.zip")
    X = pd.DataFrame({"Dept": tr.Dept.astype(float), "week": pd.to_datetime(tr.Date)
                      .dt.isocalendar().week.astype(float)})
    y = tr.Weekly_Sales.to_numpy(float)
    w = np.where(tr.IsHoliday, 5.0, 1.0)

    def fit(params: dict, weights) -> str:
        spec = ModelSpec(name="m", type="lightgbm", params={"n_estimators": 20, **params})
        return fit_model(spec, X, y, weights, keys=["Dept"]).booster.model_to_string()

    plain = fit({}, None)
    assert fit({"metric_weights": False}, w) == plain != fit({}, w)
    with pytest.raises(ModelError, match=r"params.metric_weights = 'no': expected true"):
        fit({"metric_weights": "no"}, w)


def test_a_bad_metric_weights_is_refused_when_the_project_loads(tmp_path: Path,
                                                                sample_dir: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    bad = _cli(proj, "run", "--set", "models.candidates.0.params.metric_weights=maybe")
    line = bad.stderr.strip()
    assert bad.returncode != 0 and "\n" not in line and \
        "models.candidates.0.params.metric_weights" in line and "'maybe'" in line, line
    assert not (proj / ".cd4ml").exists()


@pytest.mark.parametrize("args, text", [
    (["--cuts", "2013-03-01"], "--cuts = '2013-03-01': outside the data, whose weeks run "
                               "from 2010-02-05 to 2012-10-26"),
    (["--cuts", "2009-12-31"], "--cuts = '2009-12-31': outside the data"),
    (["--cuts", "soon"], "--cuts = 'soon': not a date"),
    (["--holdouts", "13,0"], "--holdouts = '0': expected whole numbers"),
])
def test_a_backtest_cut_outside_the_data_is_one_line(full_walmart: Path, tmp_path: Path,
                                                     args: list[str], text: str) -> None:
    from conftest import ROOT

    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "forecast_backtest.py"),
                          "--data", str(full_walmart), "--out", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=120)
    line = res.stderr.strip()
    assert res.returncode != 0 and "\n" not in line and line.startswith(text), line
    assert res.stdout == "" and not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_a_margin_keeps_the_model_on_slices_it_loses_by_little() -> None:
    keys = pd.DataFrame({"Dept": [1.0, 1.0, 2.0, 2.0]})
    y = np.array([100.0, 100.0, 100.0, 100.0])
    model = np.array([110.0, 90.0, 160.0, 40.0])  # errors 10 (dept 1), 60 (dept 2)
    base = np.array([108.0, 92.0, 120.0, 80.0])  # errors 8, 20
    args = dict(blend=False, metric="mae")
    assert [s.values for s in choose_weights(keys, y, np.ones(4), model, base, **args)] == \
        [(1.0,), (2.0,)]
    # dept 1's model is 25 % worse (within 50 %): it keeps the model; dept 2's is 200 %
    kept = choose_weights(keys, y, np.ones(4), model, base, margin_pct=50, **args)
    assert [(s.values, s.model_weight) for s in kept] == [((2.0,), 0.0)]
