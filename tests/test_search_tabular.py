"""A search on tabular tasks inside `cd4ml run`, on small real data: a LightGBM and a
scikit-learn candidate searched on wine (multiclass, log loss), and a LightGBM searched on
an ACS employment subset (binary, ROC AUC: higher is better)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tabular_projects import TINY_LIGHTGBM, acs_project, wine_project

from cd4ml.pipeline.run import RunOutcome, open_project, run_pipeline

pytestmark = pytest.mark.slow


def _stage(out: RunOutcome, name: str) -> dict[str, Any]:
    return next(s for s in out.stages if s.name == name).outputs


def _bundle_spec(proj: Path) -> dict[str, Any]:
    cfg, _, stores, _ = open_project(proj)
    with stores:
        v = stores.metadata.resolve(cfg.models.name, "production")
        return stores.artifacts.get_json(v["digest"])["model_spec"]  # type: ignore[no-any-return]


def test_wine_searches_lightgbm_and_logistic_regression(tmp_path: Path) -> None:
    proj = wine_project(tmp_path / "wine", {"models": {"candidates": [
        {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM,
         "search": {"method": "random", "trials": 4,
                    "space": {"num_leaves": {"low": 3, "high": 15, "int": True},
                              "learning_rate": {"low": 0.05, "high": 0.3, "log": True}}}},
        {"name": "logistic_regression", "type": "logistic_regression",
         "search": {"method": "grid", "trials": 3, "space": {"C": [0.01, 0.1, 1.0, 10.0]}}},
    ]}})
    out = run_pipeline(proj)
    assert out.registered, out.message
    board = {}
    for name, n in (("lightgbm", 4), ("logistic_regression", 3)):
        stage = _stage(out, f"candidate:{name}")
        trials = stage["trials"]
        assert len(trials) == n and all(t["status"] == "succeeded" for t in trials)
        best = min(trials, key=lambda t: (t["metric"], t["number"]))  # log loss: lower
        assert stage["metric"] == best["metric"] and stage["spec"]["params"].items() >= \
            best["params"].items()
        board[name] = stage
    assert len({t["params"]["C"] for t in board["logistic_regression"]["trials"]}) == 3
    selected = _stage(out, "select")
    assert selected["spec"] == board[out.selected]["spec"]
    assert _bundle_spec(proj) == board[out.selected]["spec"]  # the tuned recipe is served
    again = run_pipeline(proj)
    assert again.up_to_date and again.run_id is None


def test_acs_search_maximises_roc_auc(tmp_path: Path) -> None:
    proj = acs_project(tmp_path / "acs", rows_per_year=1_500, changes={"models": {
        "candidates": [{"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM,
                        "search": {"method": "tpe", "trials": 4, "space": {
                            "num_leaves": [3, 7, 15], "min_child_samples": [5, 50, 200]}}}]}})
    out = run_pipeline(proj)
    stage = _stage(out, "candidate:lightgbm")
    trials = stage["trials"]
    assert len(trials) == 4
    best = max(trials, key=lambda t: (t["metric"], -t["number"]))  # ROC AUC: higher
    assert stage["search"]["best_trial"] == best["number"]
    assert stage["metric"] == best["metric"] == out.metrics["validation.lightgbm.roc_auc"]
    assert _stage(out, "select")["threshold"] == stage["threshold"]
    # the holdout fits (and bundles) the best trial's recipe, whatever the gate says
    _, _, stores, _ = open_project(proj)
    with stores:
        held = stores.artifacts.get_json(_stage(out, "holdout:selected")["bundle"])
    assert held["model_spec"] == stage["spec"]
    assert held["model_spec"]["params"].items() >= best["params"].items()


def test_a_failed_trial_is_recorded_and_a_time_budget_stops_the_search(tmp_path: Path,
                                                                       ) -> None:
    """A trial whose params LightGBM refuses fails alone (a failed child run saying why);
    a time budget spent by the first batch stops the search after it."""
    proj = wine_project(tmp_path / "wine", {"models": {"candidates": [
        {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM,
         "search": {"method": "grid", "time_budget_s": 0.001,
                    "space": {"num_leaves": [1, 7, 15, 31], "learning_rate": [0.2]}}}]}})
    out = run_pipeline(proj)
    stage = _stage(out, "candidate:lightgbm")
    trials = stage["trials"]
    assert len(trials) == 2  # one batch of two workers, then the budget is spent
    # seed 0 visits num_leaves 15, then 1 (which LightGBM refuses), 7, 31
    assert [t["params"]["num_leaves"] for t in trials] == [15, 1]
    assert [t["status"] for t in trials] == ["succeeded", "failed"]
    assert trials[1]["metric"] is None and "num_leaves" in trials[1]["error"]
    assert stage["search"] == {**stage["search"], "best_trial": 0, "failed": 1}
    assert stage["spec"]["params"]["num_leaves"] == 15 and out.registered
    _, _, stores, _ = open_project(proj)
    with stores:
        children = stores.metadata.child_runs([out.run_id])[out.run_id]
    assert [c["status"] for c in children] == [t["status"] for t in trials]
    assert [c["error"] for c in children] == [t["error"] for t in trials]


def test_a_time_budget_alone_on_a_finite_space_stops_at_its_points(tmp_path: Path) -> None:
    """random with 600 s on two points: two trials, not repeats until the time is up."""
    proj = wine_project(tmp_path / "wine", {"models": {"candidates": [
        {"name": "lightgbm", "type": "lightgbm", "params": TINY_LIGHTGBM,
         "search": {"method": "random", "time_budget_s": 600,
                    "space": {"num_leaves": [3, 7]}}}]}})
    out = run_pipeline(proj)
    search = _stage(out, "candidate:lightgbm")["search"]
    assert search["trials"] == 2 and search["seconds"] < 600
