"""`cd4ml run` end to end for the tabular tasks, on small real data: multiclass (wine),
regression (bike sharing), binary (an ACS subset); caching, refit_on_all, bad projects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tabular_projects import acs_project, bike_project, wine_project

from cd4ml.errors import ConfigError, DataError
from cd4ml.pipeline.run import open_project, run_pipeline
from cd4ml.registry.loader import load_model


def _latest(proj: Path) -> dict:
    cfg, _, stores, _ = open_project(proj)
    with stores:
        v = stores.metadata.list_versions(cfg.models.name)[-1]
        return {"version": v, "manifest": stores.artifacts.get_json(v["digest"]),
                "name": cfg.models.name}


def test_multiclass_wine_end_to_end_then_cached(tmp_path: Path) -> None:
    proj = wine_project(tmp_path / "wine")
    out = run_pipeline(proj)
    assert out.registered and out.gate["passed"], out.message
    reg = _latest(proj)
    m = reg["version"]["metrics"]
    assert reg["manifest"]["task"] == "classification" and reg["manifest"]["classes"] == [0, 1, 2]
    assert m["accuracy"] > 0.85 and m["roc_auc"] > 0.95
    again = run_pipeline(proj)
    assert again.up_to_date and again.run_id is None
    model = load_model(f"{reg['name']}@production", project_dir=proj)
    rows = pd.read_parquet(proj / "data" / "wine.parquet").drop(columns="target").head(3)
    scored = model.predict(rows)
    assert {"label", "probability_0", "probability_1", "probability_2"} <= set(scored.columns)


def test_regression_bike_end_to_end(tmp_path: Path) -> None:
    proj = bike_project(tmp_path / "bike")
    out = run_pipeline(proj)
    assert out.registered, out.message
    reg = _latest(proj)
    m = reg["version"]["metrics"]
    assert reg["manifest"]["task"] == "regression" and set(m) >= {"mae", "rmse", "r2"}
    # the summer of 2012 after training on the days before: far better than the mean
    assert m["rmse"] < 0.5 * out.metrics["holdout.mean.rmse"]


def test_binary_acs_subset_refit_on_all_says_so(tmp_path: Path) -> None:
    proj = acs_project(tmp_path / "acs", changes={"split": {"refit_on_all": True}})
    out = run_pipeline(proj)
    assert out.registered, out.message
    man = _latest(proj)["manifest"]
    assert man["trained_on"]["roles"] == ["train", "validation", "holdout"]
    assert "NOT out-of-sample" in man["trained_on"]["note"]


@pytest.mark.parametrize("changes, error, text", [
    ({"evaluation": {"protected": ["SEX", "RAC1P", "NOPE"]}}, DataError,
     "'NOPE' (evaluation.protected or evaluation.slices) is not in the data"),
    ({"data": {"target": "AGEP", "classes": None}}, DataError,
     "did you mean regression?"),
    ({"models": {"candidates": [{"name": "x", "type": "xgboost"}]}}, ConfigError,
     "unknown model type"),
])
def test_bad_projects_fail_with_one_line_and_store_nothing(tmp_path: Path, changes: dict,
                                                           error: type, text: str) -> None:
    proj = acs_project(tmp_path / "acs", changes=changes)
    with pytest.raises(error) as exc:
        run_pipeline(proj)
    assert text in str(exc.value) and "\n" not in str(exc.value)
    if error is not ConfigError:  # the run was tracked and failed; nothing registered
        cfg, _, stores, _ = open_project(proj)
        with stores:
            assert stores.metadata.list_versions(cfg.models.name) == []
            assert {r["status"] for r in stores.metadata.list_runs(project=cfg.project)} == \
                {"failed"}
    cli = subprocess.run([sys.executable, "-m", "cd4ml.cli", "run", "-p", str(proj)],
                         capture_output=True, text=True)
    last = cli.stderr.strip().splitlines()[-1]  # before it: the stages' progress
    assert cli.returncode != 0 and last.startswith("error: ") and text in last


def test_a_group_too_small_is_reported_not_gated(tmp_path: Path) -> None:
    proj = acs_project(tmp_path / "acs")
    run_pipeline(proj)
    gate = _latest(proj)["version"]["gate"]
    not_gated = {(g["column"], g["value"]): g for g in gate["groups_not_gated"]}
    small = not_gated[("RAC1P", 3)]  # a few dozen of 3,000 holdout rows
    assert small["n"] < 300 and "min_group_size 300" in small["reason"]
