"""The ``leakage`` stage of a run (cd4ml.pipeline.steps_leakage), on a real ACS project
with a column derived from the target, and the checks of ``evaluation.leakage.allow``.

One full run of the pipeline for the module; the re-runs reuse every model stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml.config import load_config
from cd4ml.errors import ConfigError
from cd4ml.evaluation.render import render_leakage
from cd4ml.pipeline.checks import check_project
from cd4ml.pipeline.run import RunOutcome, open_project, run_pipeline
from tabular_projects import acs_project

ALLOW = ["evaluation.leakage.allow=[employed_copy]"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 ACS rows a year, with ``employed_copy``: ``employed`` with 1 % flipped, and
    ``row_no``: the row's number."""
    proj = acs_project(tmp_path_factory.mktemp("leak") / "acs")
    path = proj / "data" / "employment.parquet"
    df = pd.read_parquet(path)
    rng = np.random.default_rng(0)
    y = df["employed"].to_numpy()
    df["employed_copy"] = np.where(rng.random(len(df)) < 0.01, 1 - y, y)
    df["row_no"] = np.arange(len(df))
    df.to_parquet(path, index=False)
    return proj


@pytest.fixture(scope="module")
def first(project: Path) -> RunOutcome:
    return run_pipeline(project)


def test_the_run_names_the_column_and_the_figure(first: RunOutcome) -> None:
    found = {(f["column"], f["kind"]): f for f in first.leakage}
    assert set(found) == {("employed_copy", "predicts_target"), ("row_no", "identifier")}
    leak = found[("employed_copy", "predicts_target")]
    assert leak["metric"] == "roc_auc" and 0.98 < leak["value"] <= 1
    assert leak["rows"] == 600  # the validation share of 3,000 rows of 2015
    assert leak["message"] == (f"column 'employed_copy' alone predicts the target: ROC AUC "
                               f"{leak['value']:.3f} on validation (> 0.98)")
    assert found[("row_no", "identifier")]["rows"] == 3_000  # 2015 only: the fit rows
    assert json.loads(json.dumps(first.to_dict()))["leakage"] == first.leakage
    lines = render_leakage(first.leakage)
    assert len(lines) == 2 and all(line.startswith("WARNING leakage: column '")
                                   for line in lines)
    assert first.registered is not None  # a warning, never a failure


def test_the_findings_are_stored_with_the_run(project: Path, first: RunOutcome) -> None:
    _, _, stores, _ = open_project(project)
    with stores:
        run = stores.metadata.get_run(first.run_id)
    assert run["summary"]["leakage"] == first.leakage
    assert run["summary"]["stages"]["leakage"] == "ran"


def test_no_change_reuses_the_stage(project: Path, first: RunOutcome) -> None:
    again = run_pipeline(project)
    assert again.up_to_date
    assert {s.name: s.status for s in again.stages}["leakage"] == "cached"
    assert again.leakage == first.leakage


def test_an_allowed_column_is_not_flagged(project: Path, first: RunOutcome) -> None:
    """Only the leakage stage re-runs: the models' stages do not read the setting."""
    allowed = run_pipeline(project, ALLOW)
    ran = [s.name for s in allowed.stages if s.status == "ran"]
    assert ran == ["leakage"]
    assert [(f["column"], f["kind"]) for f in allowed.leakage] == [("row_no", "identifier")]
    check = next(s for s in allowed.stages if s.name == "leakage")
    assert check.outputs["allowed"] == ["employed_copy"]
    assert "employed_copy" not in check.outputs["checked"]


def test_disabled_means_no_stage(project: Path, first: RunOutcome) -> None:
    off = run_pipeline(project, ["evaluation.leakage.enabled=false"])
    assert "leakage" not in [s.name for s in off.stages] and off.leakage == []
    assert off.up_to_date  # nothing else changed


@pytest.mark.parametrize(("name", "why"), [
    ("employed", "not an input: it is the target"), ("id", "not an input: it is the id"),
    ("year", "not an input: it is dropped (inputs.drop)")])
def test_a_column_that_is_no_input_is_refused_at_load(project: Path, name: str,
                                                       why: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_project(project, [f"evaluation.leakage.allow=[AGEP,{name}]"])
    assert str(info.value) == (f"{project / 'cd4ml.yaml'}: evaluation.leakage.allow.1 = "
                               f"{name!r}: {why}")


def test_a_name_not_in_the_table_is_refused_by_the_stage(project: Path,
                                                         first: RunOutcome) -> None:
    """The table's columns are known once the data is read: the stage refuses the run."""
    with pytest.raises(ConfigError) as info:
        run_pipeline(project, ["evaluation.leakage.allow=[AGE]"])
    assert str(info.value).startswith("evaluation.leakage.allow.0 = 'AGE': not an input "
                                      "the leakage check looks at; inputs: AGEP, SCHL, ")


def test_a_forecasts_allowed_names_are_its_covariates_and_static_columns() -> None:
    root = Path(__file__).resolve().parents[1] / "examples" / "walmart"
    cfg, _ = load_config(root, ["evaluation.leakage.allow=[Size,MarkDown1]"])
    check_project(cfg)
    cfg, _ = load_config(root, ["evaluation.leakage.allow=[Dept]"])
    with pytest.raises(ConfigError, match="evaluation.leakage.allow.0 = 'Dept': not an "
                                          "input the leakage check looks at; inputs: "
                                          "IsHoliday, Temperature, .*, Type, Size$"):
        check_project(cfg)


# -- forecasts: the data stages and the leakage stage of the Walmart sample ------------
@pytest.fixture(scope="module")
def walmart(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The 1,001-row Walmart sample with the sales as reported (the target with 2 % noise)
    as a covariate known ahead, and again as an observed one (read 39 weeks late); the
    stages up to ``leakage`` run, twice."""
    import zipfile

    from cd4ml.pipeline.context import RunContext
    from cd4ml.pipeline.forecast import build_stages
    from cd4ml.pipeline.runner import run_stages
    from conftest import make_project

    data = tmp_path_factory.mktemp("walmart-data")
    for name in ("features.csv", "stores.csv"):
        (data / name).write_bytes((sample_dir / name).read_bytes())
    sales = pd.read_csv(sample_dir / "train.csv.zip")
    noise = np.random.default_rng(0).normal(0, 0.02, len(sales))
    sales["Reported"] = sales["Weekly_Sales"] * (1 + noise)
    sales["Reported_late"] = sales["Reported"]
    with zipfile.ZipFile(data / "train.csv.zip", "w") as z:
        z.writestr("train.csv", sales.to_csv(index=False))
    proj = make_project(tmp_path_factory.mktemp("walmart"), data)
    sets = ["features.covariates.Reported=known_ahead",
            "features.covariates.Reported_late=observed"]
    cfg, raw, stores, root = open_project(proj, sets)
    with stores:
        ctx = RunContext(cfg, root, stores.metadata, stores.artifacts, raw)
        stages = build_stages(cfg, ctx)
        stages = stages[:[s.name for s in stages].index("leakage") + 1]
        runs = [{r.name: r for r in run_stages(stages, ctx)} for _ in range(2)]
        pnl = ctx.frame(runs[0]["panel"].outputs["panel"])
    return {"cfg": cfg, "runs": runs, "panel": pnl}


def test_a_forecasts_covariate_known_ahead_that_is_the_target_is_flagged(walmart) -> None:
    from sklearn.tree import DecisionTreeRegressor

    from cd4ml.evaluation.leakage import MAX_LEAVES, MIN_LEAF

    first, again = walmart["runs"]
    out = first["leakage"].outputs
    cfg = walmart["cfg"]
    assert out["checked"] == [*cfg.features.static, *cfg.features.covariates]  # no keys
    assert [(f["column"], f["kind"]) for f in out["findings"]] == [
        ("Reported", "predicts_target")]  # Reported_late is a lag: no leak
    # by hand: a tree on the training periods, R² on the validation periods
    pnl, w = walmart["panel"], first["split"].outputs["windows"]
    known = pnl["Weekly_Sales"].notna()
    fit = known & (pnl["Date"] <= pd.Timestamp(w["train_end"]))
    val = known & pnl["Date"].between(pd.Timestamp(w["validation_start"]),
                                      pd.Timestamp(w["validation_end"]))
    tree = DecisionTreeRegressor(max_leaf_nodes=MAX_LEAVES, min_samples_leaf=MIN_LEAF,
                                 random_state=0)
    tree.fit(pnl.loc[fit, ["Reported"]].to_numpy(), pnl.loc[fit, "Weekly_Sales"])
    y = pnl.loc[val, "Weekly_Sales"].to_numpy()
    r2 = 1 - ((y - tree.predict(pnl.loc[val, ["Reported"]].to_numpy())) ** 2).sum() \
        / ((y - y.mean()) ** 2).sum()
    assert out["findings"][0]["value"] == pytest.approx(r2, abs=1e-12) and r2 > 0.95
    assert (out["fit_rows"], out["validation_rows"]) == (int(fit.sum()), int(val.sum()))
    assert again["leakage"].status == "cached"
