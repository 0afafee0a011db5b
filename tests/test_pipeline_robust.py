"""Runs that meet trouble on real data: a candidate that cannot be fitted, every model
failing, a training window too short for the features, recency weighting and its bad
values (README: "A candidate that fails", "History the features need", "Recency
weighting")."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FAST, make_project
from tabular_projects import BIKE_CSV, TINY_LIGHTGBM, acs_project, bike_project

from cd4ml.config import FeaturesConfig
from cd4ml.errors import ConfigError, DataError
from cd4ml.features.compute import FeatureSpec, compute_features
from cd4ml.features.history import check_history, history_needs
from cd4ml.pipeline.run import open_project, run_pipeline

CLI = [sys.executable, "-m", "cd4ml.cli"]
#: the sample's 143 weeks with a 39-week validation (the example's is 13): the validation
#: fit has 65 weeks
BASE = [*FAST, "split.validation_periods=39"]
SETS = sum((["--set", s] for s in BASE), [])
#: lightgbm learns the target less trend_4, known only after horizon + 52 + 1 = 92 weeks:
#: the validation fit (65 weeks of the sample) has no row with it, the holdout fit has
LIGHTGBM_FAILS = "models.candidates.0.params.target_offset=trend_4"
LIGHTGBM_ERROR = ("model 'lightgbm': no training rows with a known target and "
                  "target_offset 'trend_4' (fit_rows: offset_known): trend_4 is missing on "
                  "all 455 rows with a known target")
ALL_CANDIDATES_FAIL = [LIGHTGBM_FAILS, "models.candidates.1.params.max_depth=-1",
                       "models.candidates.2.params.min_samples_leaf=0"]


def cli_run(proj: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [*SETS, *sum((["--set", s] for s in sets), [])]
    return subprocess.run([*CLI, "run", "-p", str(proj), *args], capture_output=True,
                          text=True, timeout=600)


def state(proj: Path) -> tuple[list[int], list[dict[str, Any]]]:
    """(registered versions, runs newest first)."""
    cfg, _, stores, _ = open_project(proj)
    with stores:
        return ([v["version"] for v in stores.metadata.list_versions(cfg.models.name)],
                stores.metadata.list_runs(project=cfg.project))


def stage_frame(proj: Path, out: Any, stage: str) -> pd.DataFrame:
    """The scored rows a holdout stage kept (its ``outputs`` frame)."""
    digest = next(s for s in out.stages if s.name == stage).outputs["outputs"]
    _, _, stores, _ = open_project(proj)
    with stores:
        return pd.read_parquet(io.BytesIO(stores.artifacts.get_bytes(digest)))


def one_candidate(proj: Path, spec: dict[str, Any]) -> None:
    """The project's candidates replaced by ``spec`` (the text edited: YAML 1.1 would read
    the joins' ``on`` keys back as True)."""
    path = proj / "cd4ml.yaml"
    text = path.read_text()
    start, end = text.index("  candidates:\n"), text.index("  baselines:\n")
    block = yaml.safe_dump({"candidates": [spec]}, default_flow_style=None)
    path.write_text(text[:start] + "".join(f"  {line}\n" for line in block.splitlines())
                    + text[end:])


# -- a candidate that fails ------------------------------------------------------------
def test_a_failing_candidate_is_reported_and_the_others_are_compared(
        sample_dir: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    res = cli_run(proj, LIGHTGBM_FAILS)
    assert res.returncode == 0, res.stderr
    assert "✗ candidate:lightgbm" in res.stderr and LIGHTGBM_ERROR in res.stderr
    assert f"failed candidate:lightgbm: {LIGHTGBM_ERROR}" in res.stdout
    versions, runs = state(proj)
    assert versions == [1] and runs[0]["status"] == "succeeded"
    summary = runs[0]["summary"]
    assert summary["failed"] == {"candidate:lightgbm": LIGHTGBM_ERROR}
    board = {r["model"]: r for r in summary["leaderboard"]}
    assert board["lightgbm"]["error"] == LIGHTGBM_ERROR
    assert board["lightgbm"]["rank"] is None and board["lightgbm"]["wmae"] is None
    evaluated = {n: r["wmae"] for n, r in board.items() if n != "lightgbm"}
    assert set(evaluated) == {"random_forest", "decision_tree", "seasonal_naive"}
    best = min(("random_forest", "decision_tree"), key=evaluated.__getitem__)
    assert summary["selected"] == best  # selected among the others
    assert "validation.lightgbm.wmae" not in runs[0]["metrics"]
    assert f"validation.{best}.wmae" in runs[0]["metrics"]

    again = cli_run(proj, LIGHTGBM_FAILS)  # the failure is cached: no work, still reported
    assert again.returncode == 0, again.stderr
    assert "Pipeline is up to date" in again.stdout and LIGHTGBM_ERROR in again.stdout
    assert state(proj)[1][0]["id"] == runs[0]["id"]

    fixed = run_pipeline(proj, BASE)  # the fix (the example's target_offset) re-runs it
    ran = {s.name: s for s in fixed.stages if s.status == "ran"}
    assert "candidate:lightgbm" in ran and ran["candidate:lightgbm"].outputs["error"] is None
    assert "candidate:random_forest" not in ran and fixed.failed == {}

    before = state(proj)  # a bad half-life: refused in one line, the stores unchanged
    bad = cli_run(proj, "models.candidates.1.params.recency_half_life=-2")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        f"error: {proj / 'cd4ml.yaml'}: models.candidates.1.params.recency_half_life = -2: "
        f"must be a number of weeks > 0 (the age at which a row counts half)"]
    assert state(proj) == before


def test_no_candidate_left_the_baselines_decide_and_nothing_left_fails_in_one_line(
        sample_dir: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    out = run_pipeline(proj, [*BASE, *ALL_CANDIDATES_FAIL])
    assert set(out.failed) == {"candidate:lightgbm", "candidate:random_forest",
                               "candidate:decision_tree"}
    assert "must be an int in the range [1, inf)" in out.failed["candidate:random_forest"]
    assert out.selected is None and out.gate is None
    assert out.registered and out.registered["kind"] == "baseline"
    assert out.registered["recipe"] == "seasonal_naive"
    assert "the best baseline seasonal_naive serves" in out.message

    # the baseline fails too (it needs the series keys as features): nothing to evaluate
    res = cli_run(proj, *ALL_CANDIDATES_FAIL, "features.series_keys_as_features=false")
    assert res.returncode == 1 and res.stdout == ""
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no model could be evaluated on validation: lightgbm: "
                           f"{LIGHTGBM_ERROR}; random_forest: ")
    assert "; decision_tree: models.decision_tree: DecisionTreeRegressor could not fit: " \
           "The 'min_samples_leaf' parameter" in last
    assert last.endswith("; seasonal_naive: models.seasonal_naive: seasonal_naive needs "
                         "feature(s) ['Store', 'Dept'] (set features.series_keys_as_features: "
                         "true)")
    versions, runs = state(proj)
    assert versions == [1]  # nothing more registered
    assert runs[0]["status"] == "failed" and "no model could be evaluated" in runs[0]["error"]


def test_a_failing_tabular_candidate_and_recency_weighted_mean_baseline(tmp_path: Path) -> None:
    """Bike rentals: linear regression with a parameter scikit-learn refuses fails alone;
    the mean baseline with a 4-week half-life is the recency-weighted mean of the
    training days, aged from the last of them."""
    half_life = 4
    proj = bike_project(tmp_path / "bike", {"models": {"candidates": [
        {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM},
        {"name": "linear_regression", "type": "linear_regression",
         "params": {"fit_intercept": "sometimes"}}],
        "baselines": [{"name": "mean", "type": "mean",
                       "params": {"recency_half_life": half_life}}]}})
    out = run_pipeline(proj)
    assert list(out.failed) == ["candidate:linear_regression"]
    assert "could not fit: The 'fit_intercept' parameter of LinearRegression" in \
        out.failed["candidate:linear_regression"]
    assert out.selected == "lightgbm" and out.registered, out.message
    from starlette.testclient import TestClient

    from cd4ml.dashboard import create_dashboard

    page = TestClient(create_dashboard(proj)).get(f"/runs/{out.run_id}")
    assert page.status_code == 200
    assert "<th>error</th>" in page.text and "LinearRegression must be an instance" in page.text
    assert 'data-chart="leaderboard" data-points="2"' in page.text  # lightgbm, mean

    df = pd.read_csv(BIKE_CSV, parse_dates=["dteday"])
    fit = df[df.dteday < "2012-07-01"]  # training and validation rows: the holdout fit
    age = (fit.dteday.max() - fit.dteday).dt.days.to_numpy() / 7
    by_hand = np.average(fit.cnt, weights=0.5 ** (age / half_life))
    pred = stage_frame(proj, out, "holdout:mean")["prediction"].to_numpy()
    np.testing.assert_allclose(pred, by_hand, rtol=1e-12)
    assert abs(by_hand - fit.cnt.mean()) > 500  # recent days (spring 2012) rent far more


# -- too little history ----------------------------------------------------------------
def test_too_little_history_is_refused_before_any_fit(sample_dir: Path, tmp_path: Path,
                                                      ) -> None:
    proj = make_project(tmp_path, sample_dir)
    res = cli_run(proj, "split.validation_periods=78", "features.lags=[39,52]")
    assert res.returncode == 1 and res.stdout == ""
    last = res.stderr.strip().splitlines()[-1]
    assert last == (
        "error: split.validation_periods 78 + split.holdout_periods 39 weeks leave 26 weeks "
        "of training (2010-02-05 to 2010-07-30); features.lags 52 needs at least 53 "
        "(lag_52 reads 52 weeks back), features.lags 39 at least 40, features.horizon 39 at "
        "least 40 (every value derived from the target is read 39 weeks back): shorten the "
        "validation or holdout, or drop the lags that need more (README: History the "
        "features need)")
    assert "candidate:" not in res.stderr  # refused at the split, before any fit
    versions, runs = state(proj)
    assert versions == [] and [r["status"] for r in runs] == ["failed"]
    # without lags the horizon alone decides: 39 + 1 weeks
    res = cli_run(proj, "split.validation_periods=78", "features.lags=[]")
    assert res.returncode == 1
    assert "26 weeks of training (2010-02-05 to 2010-07-30); features.horizon 39 needs " \
           "at least 40 (every value derived from the target is read 39 weeks back): " \
           "shorten the validation or holdout, or a shorter features.horizon" in res.stderr


def test_the_needs_are_where_the_feature_code_first_knows_a_value(sample_dir: Path) -> None:
    """Each documented need against compute_features on a full sample series: the
    feature's first known week is need - 1 (0-based), and one week less is refused."""
    tr = pd.read_csv(sample_dir / "train.csv.zip", parse_dates=["Date"])
    one = tr[tr.Dept == 1].sort_values("Date").reset_index(drop=True)
    assert len(one) == 143 and one.Weekly_Sales.notna().all()
    feats = FeaturesConfig(horizon=39, lags=[39, 52], rolling_windows=[4, 13, 52],
                           rolling_stats=["mean", "std"])
    spec = FeatureSpec(keys=["Store", "Dept"], time="Date", target="Weekly_Sales",
                       horizon=39, lags=[39, 52], rolling_windows=[4, 13, 52],
                       rolling_stats=["mean", "std"], calendar=[])
    X = compute_features(one, spec)

    def first(col: str) -> int:
        return int(np.flatnonzero(X[col].notna().to_numpy())[0])

    needs = {n.feature: n for n in history_needs(feats)}
    derived = [c for c in X.columns if c not in ("Store", "Dept")]
    assert min(first(c) for c in derived) == needs["target-derived values"].periods - 1 == 39
    for k in (39, 52):
        assert first(f"lag_{k}") == needs[f"lag_{k}"].periods - 1 == k
    assert first("seasonal_naive") == needs["seasonal_naive"].periods - 1 == 52
    assert first("trend_4") == needs["trend_4"].periods - 1 == 39 + 52
    y = one.Weekly_Sales.to_numpy()
    # roll_mean_13 holds a whole window from need - 1 (of the values 39 weeks back)
    assert needs["roll_*_13"].periods == 39 + 13
    np.testing.assert_allclose(X["roll_mean_13"].iloc[51], y[:13].mean(), rtol=1e-6)
    assert not needs["seasonal_mean"].refused and needs["seasonal_mean"].periods == 105
    check_history(53, feats, validation_periods=51, holdout_periods=39)  # lag_52 once
    with pytest.raises(DataError, match="leave 52 weeks of training; features.lags 52 "
                                        "needs at least 53"):
        check_history(52, feats, validation_periods=52, holdout_periods=39)


# -- recency weighting -----------------------------------------------------------------
def test_recency_weighting_fits_the_hand_computed_weights_from_each_fits_end(
        sample_dir: Path, tmp_path: Path) -> None:
    """A tree that never splits predicts the weighted mean of the target: with a 8-week
    half-life, the mean weighted by holiday weight 5 x 0.5 ** (age / 8), the age counted
    from the validation fit's end (train_end) and from the holdout fit's (validation_end)."""
    half_life = 8
    proj = make_project(tmp_path, sample_dir)

    one_candidate(proj, {"name": "mean_tree", "type": "decision_tree",
                         "params": {"min_samples_split": 100_000,
                                    "recency_half_life": half_life}})
    out = run_pipeline(proj)
    assert out.selected == "mean_tree" and out.failed == {}

    tr = pd.read_csv(sample_dir / "train.csv.zip", parse_dates=["Date"])
    dates = np.sort(tr.Date.unique())
    val = yaml.safe_load((proj / "cd4ml.yaml").read_text())["split"]["validation_periods"]
    train_end, validation_end = dates[-40 - val], dates[-40]  # 39 holdout weeks
    holiday = np.where(tr.IsHoliday, 5.0, 1.0)

    def weighted_mean(end: np.datetime64) -> tuple[float, float]:
        rows = (tr.Date <= end).to_numpy()
        age = (end - tr.Date[rows]).dt.days.to_numpy() / 7
        w = holiday[rows] * 0.5 ** (age / half_life)
        return (float(np.average(tr.Weekly_Sales[rows], weights=w)),
                float(np.average(tr.Weekly_Sales[rows], weights=holiday[rows])))

    hold_mean, hold_plain = weighted_mean(validation_end)
    pred = stage_frame(proj, out, "holdout:selected")["prediction"].to_numpy()
    np.testing.assert_allclose(pred, hold_mean, rtol=1e-9)
    assert abs(hold_mean - hold_plain) > 100  # the weighting changed the fitted model
    val_mean, _ = weighted_mean(train_end)
    val = tr[(tr.Date > train_end) & (tr.Date <= validation_end)]
    w = np.where(val.IsHoliday, 5.0, 1.0)
    wmae = float(np.sum(w * np.abs(val.Weekly_Sales - val_mean)) / w.sum())
    np.testing.assert_allclose(out.metrics["validation.mean_tree.wmae"], wmae, rtol=1e-6)


@pytest.mark.parametrize("value", [0, -26, "26"])
def test_a_bad_half_life_is_one_line_naming_the_key_and_stores_nothing(
        sample_dir: Path, tmp_path: Path, value: Any) -> None:
    proj = make_project(tmp_path, sample_dir)
    key = "models.candidates.0.params.recency_half_life"
    override = f"{key}={value!r}"  # '26' stays text
    with pytest.raises(ConfigError) as exc:
        run_pipeline(proj, [*FAST, override])
    assert f"{key} = {value!r}: must be a number of weeks > 0" in str(exc.value)
    res = cli_run(proj, override)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
    assert not (proj / ".cd4ml").exists() or state(proj) == ([], [])


def test_recency_is_refused_where_it_cannot_apply(sample_dir: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    with pytest.raises(ConfigError, match=r"models.baselines.0.params.recency_half_life = "
                                          r"26: seasonal_naive does not take sample weights"):
        run_pipeline(proj, [*FAST, "models.baselines.0.params.recency_half_life=26"])
    acs = acs_project(tmp_path / "acs", {"models": {"candidates": [
        {"name": "lightgbm", "type": "lightgbm",
         "params": {**TINY_LIGHTGBM, "recency_half_life": 26}}]}})
    with pytest.raises(ConfigError, match="models.candidates.0.params.recency_half_life = "
                                          "26: task classification has no time to age rows "
                                          "by: split by time"):
        run_pipeline(acs)


# -- the gate when a model failed on the holdout ---------------------------------------
def test_the_gate_skips_baselines_that_failed_and_says_why_it_cannot_judge(
        sample_dir: Path) -> None:
    """steps_model.gate on reports of real holdout rows (the last 39 sample weeks): the
    candidate predicts last year's week, the baselines the series mean and median."""
    from cd4ml.config import GateConfig
    from cd4ml.evaluation import evaluate
    from cd4ml.pipeline.steps_model import gate

    tr = pd.read_csv(sample_dir / "train.csv.zip", parse_dates=["Date"])
    tr = tr.sort_values(["Dept", "Date"]).reset_index(drop=True)
    tr["last_year"] = tr.groupby("Dept").Weekly_Sales.shift(52)
    for stat in ("mean", "median"):
        tr[stat] = tr.groupby("Dept").Weekly_Sales.transform(stat)
    hold = tr[tr.Date > np.sort(tr.Date.unique())[-40]].copy()
    hold["w"] = np.where(hold.IsHoliday, 5.0, 1.0)
    report = {c: evaluate(hold, pred=c, target="Weekly_Sales", weight="w")
              for c in ("last_year", "mean", "median")}
    specs = [{"name": "series_mean", "type": "series_mean", "params": {}},
             {"name": "series_median", "type": "seasonal_naive", "params": {}}]

    def judge(cand: Any, mean: Any, median: Any, baseline: str = "best",
              cand_error: str | None = None) -> dict[str, Any]:
        inputs = {"holdout:selected.report": cand, "holdout:selected.name": "lightgbm",
                  "holdout:selected.error": cand_error,
                  "holdout:series_mean.report": mean,
                  "holdout:series_mean.error": None if mean else "ModelError: mean broke",
                  "holdout:series_median.report": median,
                  "holdout:series_median.error": None if median else "ModelError: median broke"}
        params = {"gate": GateConfig(baseline=baseline).model_dump(mode="json"),
                  "metric": "wmae", "baselines": ["series_mean", "series_median"],
                  "specs": specs}
        return gate(None, inputs, params)

    both = judge(report["last_year"], report["mean"], report["median"])
    assert both["report"] is not None and both["note"] is None
    assert both["passed"] == both["report"]["passed"] and both["report"]["baseline"] in \
        ("series_mean", "series_median")
    # the gate's own baseline failed: no verdict, the other baseline is bundled
    named = judge(report["last_year"], None, report["median"], baseline="series_mean")
    assert not named["passed"] and named["report"] is None
    assert named["note"] == ("the gate's baseline could not be evaluated on the holdout: "
                             "series_mean: ModelError: mean broke")
    assert named["best_baseline"] == "series_median" and named["bundle_baseline"]
    # "best" of the baselines left
    one = judge(report["last_year"], None, report["median"])
    assert one["report"]["baseline"] == "series_median" and one["note"] is None
    # no baseline left: nothing to bundle
    none = judge(report["last_year"], None, None)
    assert none["best_baseline"] is None and not none["bundle_baseline"]
    assert "series_mean: ModelError: mean broke; series_median: ModelError: median broke" \
        in none["note"]
    # the selected candidate failed on the holdout: the best baseline is bundled
    cand = judge(None, report["mean"], report["median"], cand_error="ModelError: boom")
    assert cand["note"] == ("the selected candidate lightgbm could not be evaluated on the "
                            "holdout: ModelError: boom")
    assert cand["bundle_baseline"] and not cand["passed"]
