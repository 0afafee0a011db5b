"""A candidate's hyperparameter search inside `cd4ml run`, on the Walmart sample (real
data, no mocks): trials per method, seeded reproducibility, the best trial's recipe in
the holdout and the bundle, no work on a re-run, a larger budget reusing the trials it
has, trials as child runs in `cd4ml runs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import heavy_imports_of_a_run, make_project

from cd4ml.pipeline.run import RunOutcome, open_project, run_pipeline

pytestmark = pytest.mark.slow

#: one LightGBM candidate, small enough for the 1,001-row sample (its training rows are
#: fewer than the example's min_child_samples of 100, so that is searched too)
PARAMS = ("{objective: l1, n_estimators: 40, learning_rate: 0.1, num_leaves: 15, "
          "min_child_samples: 20, target_offset: seasonal_baseline, categorical: [Store, Dept]}")
SPACE = ("{min_child_samples: [5, 10, 20], num_leaves: {low: 4, high: 32, int: true, step: 4},"
         " learning_rate: {low: 0.05, high: 0.2, step: 0.05}}")


def searched(method: str, trials: int, *, workers: int = 2) -> list[str]:
    """Overrides: the candidates are one LightGBM with a search."""
    return [(f"models.candidates=[{{name: lightgbm, type: lightgbm, params: {PARAMS}, "
             f"search: {{method: {method}, trials: {trials}, workers: {workers}, "
             f"space: {SPACE}}}}}]")]


def _stage(out: RunOutcome, name: str = "candidate:lightgbm") -> dict[str, Any]:
    return next(s for s in out.stages if s.name == name).outputs


def _trials(out: RunOutcome) -> list[tuple[dict[str, Any], float]]:
    return [(t["params"], t["metric"]) for t in _stage(out)["trials"]]


@pytest.fixture(scope="module")
def tpe(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunOutcome]:
    proj = make_project(tmp_path_factory.mktemp("search-tpe"), sample_dir)
    out = run_pipeline(proj, searched("tpe", 6))
    assert out.registered, out.message
    return proj, out


def test_tpe_runs_its_budget_and_its_best_trial_is_the_recipe(tpe: tuple[Path, RunOutcome],
                                                               ) -> None:
    proj, out = tpe
    stage = _stage(out)
    trials = stage["trials"]
    assert [t["number"] for t in trials] == list(range(6))
    assert all(t["status"] == "succeeded" and not t["cached"] for t in trials)
    best = min(trials, key=lambda t: (t["metric"], t["number"]))
    assert stage["search"]["best_trial"] == best["number"]
    assert stage["metric"] == best["metric"] == out.metrics["validation.lightgbm.wmae"]
    # the best trial's params over the candidate's are the recipe select, holdout and the
    # bundle use (the bundle is refitted with it)
    cfg, _, stores, _ = open_project(proj, searched("tpe", 6))
    stores.close()
    assert stage["spec"]["params"] == {**cfg.models.candidates[0].params, **best["params"]}
    assert _stage(out, "select")["spec"] == stage["spec"]
    assert "search" not in stage["spec"]
    _, _, stores, _ = open_project(proj)
    with stores:
        v = stores.metadata.resolve("walmart-weekly-sales", "production")
        manifest = stores.artifacts.get_json(v["digest"])
    for k, value in best["params"].items():
        assert manifest["model_spec"]["params"][k] == value
    assert v["metrics"]["wmae"] == out.metrics["holdout.selected.wmae"]


def test_a_rerun_with_nothing_changed_does_no_work(tpe: tuple[Path, RunOutcome]) -> None:
    proj, _ = tpe
    again = run_pipeline(proj, searched("tpe", 6))
    assert again.up_to_date and again.run_id is None
    assert {s.status for s in again.stages} <= {"cached", "skipped"}
    assert again.searches["lightgbm"]["trials"] == 6
    text = subprocess.run([sys.executable, "-m", "cd4ml.cli", "run", "-p", str(proj),
                           "--set", searched("tpe", 6)[0]], capture_output=True, text=True,
                          check=True).stdout
    assert "up to date" in text and "search lightgbm: tpe, 6 trials (6 fitted, 0 reused" in text
    # and checking that (the search's params included) imports no ML library nor optuna
    assert heavy_imports_of_a_run(proj, searched("tpe", 6), (
        "lightgbm", "sklearn", "skops", "optuna", "joblib")) == (True, [])


def test_trials_are_child_runs_in_cd4ml_runs(tpe: tuple[Path, RunOutcome]) -> None:
    proj, out = tpe
    cli = [sys.executable, "-m", "cd4ml.cli", "runs", "-p", str(proj)]
    doc = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True,
                                    check=True).stdout)
    run = next(r for r in doc if r["id"] == out.run_id)
    assert [c["params"]["trial"] for c in run["trials"]] == list(range(6))
    assert all(c["parent_id"] == out.run_id and c["status"] == "succeeded"
               for c in run["trials"])
    assert [c["metrics"]["validation.wmae"] for c in run["trials"]] == \
        [t["metric"] for t in _stage(out)["trials"]]
    assert run["trials"][0]["params"]["params"] == _stage(out)["trials"][0]["params"]
    assert all(r["parent_id"] is None for r in doc)  # trials are not runs of their own
    text = subprocess.run([*cli, "--limit", "10"], capture_output=True, text=True,
                          check=True, env={**os.environ, "COLUMNS": "220"}).stdout
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if out.run_id in line)
    trial_lines = [line for line in lines[first + 1:] if line.startswith("└ ")]
    assert len(trial_lines) == 6 and "tpe #0" in trial_lines[0]


def test_a_larger_budget_fits_only_the_new_trials(tpe: tuple[Path, RunOutcome]) -> None:
    proj, first = tpe
    out = run_pipeline(proj, searched("tpe", 8))
    stage = _stage(out)
    assert stage["search"] == {**stage["search"], "trials": 8, "fitted": 2, "reused": 6}
    assert [t["cached"] for t in stage["trials"]] == [True] * 6 + [False] * 2
    assert _trials(out)[:6] == _trials(first)  # the same seed asks the same first six
    ran = {s.name for s in out.stages if s.status == "ran"}
    assert "candidate:lightgbm" in ran and not ran & {"panel", "features", "split"}
    _, _, stores, _ = open_project(proj)
    with stores, stores.metadata.engine.connect() as conn:  # one cached fit per trial
        fits = conn.execute(sa.text("SELECT count(*) FROM stage_cache WHERE stage = "
                                    "'trial:lightgbm'")).scalar()
        summary = stores.metadata.get_run(out.run_id)["summary"]
    assert fits == 8
    assert summary["searches"]["lightgbm"] == stage["search"]


def test_the_same_seed_gives_the_same_search(tpe: tuple[Path, RunOutcome], sample_dir: Path,
                                             tmp_path: Path) -> None:
    """A fresh project (its own store: nothing reused) with the same seed, one worker
    (in this process, LightGBM's own threads): the same trials, metrics and best."""
    _, first = tpe
    proj = make_project(tmp_path, sample_dir)
    # one worker asks TPE one trial at a time: the same seed gives the same first five
    # (TPE's random start-up) whatever the workers, and the same fits give the same metrics
    out = run_pipeline(proj, searched("tpe", 5, workers=1))
    assert _trials(out) == _trials(first)[:5]
    assert not any(t["cached"] for t in _stage(out)["trials"])


@pytest.mark.parametrize("method", ["grid", "random"])
def test_grid_and_random_run_their_budget(method: str, sample_dir: Path,
                                          tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    out = run_pipeline(proj, searched(method, 5))
    trials = _stage(out)["trials"]
    assert len(trials) == 5 and all(t["status"] == "succeeded" for t in trials)
    if method == "grid":  # a sample without replacement of its 3 x 8 x 4 points
        points = [tuple(sorted(t["params"].items())) for t in trials]
        assert len(set(points)) == 5
        assert all(t["params"]["num_leaves"] in range(4, 33, 4) and
                   t["params"]["learning_rate"] in (0.05, 0.1, 0.15, 0.2) for t in trials)
    else:
        assert all(4 <= t["params"]["num_leaves"] <= 32 for t in trials)
    assert out.registered and out.selected == "lightgbm"


def test_the_dashboard_shows_a_runs_trials(tpe: tuple[Path, RunOutcome]) -> None:
    from starlette.testclient import TestClient

    from cd4ml.dashboard import create_dashboard

    proj, out = tpe
    page = TestClient(create_dashboard(proj)).get(f"/runs/{out.run_id}")
    assert page.status_code == 200
    assert "Search trials" in page.text and page.text.count(">tpe<") == 6
    listing = TestClient(create_dashboard(proj)).get("/runs").text
    assert out.run_id in listing and _stage(out)["trials"] and not any(
        c in listing for c in _child_ids(proj, out.run_id))


def _child_ids(proj: Path, run_id: str) -> list[str]:
    _, _, stores, _ = open_project(proj)
    with stores:
        return [c["id"] for c in stores.metadata.child_runs([run_id])[run_id]]

