"""The whole loop on the Walmart sample: run, cache, status, registry, CLI, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import FAST, heavy_imports_of_a_run, make_project

from cd4ml.pipeline.run import open_project, pipeline_status, run_pipeline

CLI = [sys.executable, "-m", "cd4ml.cli"]


def cli(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "-p", str(proj)] if args and args[0] not in
                          ("promote",) else [*CLI, *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def project(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = make_project(tmp_path_factory.mktemp("e2e"), sample_dir)
    first = run_pipeline(proj, FAST)
    assert not first.up_to_date and first.run_id
    return proj


def test_first_run_registers_a_gated_version(project: Path) -> None:
    _, _, stores, _ = open_project(project)
    with stores:
        versions = stores.metadata.list_versions("walmart-weekly-sales")
        runs = stores.metadata.list_runs()
    assert [v["version"] for v in versions] == [1]
    v = versions[0]
    assert "production" in v["aliases"]
    assert v["lineage"]["snapshots"].keys() == {"sales", "features", "stores"}
    assert runs[0]["status"] == "succeeded" and runs[0]["duration_s"] > 0
    assert runs[0]["config_hash"] and runs[0]["snapshots"]
    assert any(k.startswith("holdout.") for k in runs[0]["metrics"])
    assert (project / "schema" / "sales.yaml").is_file()


def test_rerun_with_nothing_changed_does_no_work(project: Path) -> None:
    again = run_pipeline(project, FAST)
    assert again.up_to_date and again.run_id is None
    assert {s.status for s in again.stages} <= {"cached", "skipped"}
    assert all(r.status in ("cached", "skipped") for r in pipeline_status(project, FAST))


def test_up_to_date_check_imports_no_ml_library(project: Path) -> None:
    assert heavy_imports_of_a_run(project, FAST) == (True, [])


def test_changing_one_parameter_reruns_only_downstream(project: Path) -> None:
    changed = [*FAST, "models.candidates.2.params.max_depth=6"]
    stale = {r.name: r for r in pipeline_status(project, changed)}
    assert stale["candidate:decision_tree"].status == "stale"
    assert "params changed" in stale["candidate:decision_tree"].reason
    out = run_pipeline(project, changed)
    ran = {s.name for s in out.stages if s.status == "ran"}
    assert "candidate:decision_tree" in ran
    assert not ran & {"snapshot:sales", "validate:sales", "panel", "features", "split",
                      "candidate:lightgbm", "candidate:random_forest",
                      "holdout:seasonal_naive"}


def test_force_reruns_everything(project: Path) -> None:
    out = run_pipeline(project, FAST, force=True)
    assert {s.status for s in out.stages} <= {"ran", "skipped"}
    assert out.registered is not None and not out.registered["new"]  # same bundle bytes


def test_cli_runs_models_json_and_diff(project: Path) -> None:
    runs = cli(project, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    rows = json.loads(runs.stdout)
    assert len(rows) >= 2
    models = json.loads(cli(project, "models", "--json").stdout)
    assert models[0]["model_name"] == "walmart-weekly-sales"
    diff = subprocess.run([*CLI, "runs", "-p", str(project), "diff", rows[-1]["id"],
                           rows[-2]["id"], "--json"], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stderr
    doc = json.loads(diff.stdout)
    assert "models.candidates.2.params.max_depth" in doc["params"]


def test_promote_moves_alias_and_is_audited(project: Path) -> None:
    bad = subprocess.run([*CLI, "promote", "walmart-weekly-sales", "99", "--alias", "production",
                          "-p", str(project)], capture_output=True, text=True)
    assert bad.returncode != 0 and "99" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    ok = subprocess.run([*CLI, "promote", "walmart-weekly-sales", "1", "--alias", "staging",
                         "-p", str(project)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    _, _, stores, _ = open_project(project)
    with stores:
        events = stores.metadata.list_audit()
    assert any(e["action"] == "set_alias" and "staging" in e["object"] for e in events)


def test_baseline_serves_when_nothing_passes(sample_dir: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    res = subprocess.run([*CLI, "run", "-p", str(proj), *sum((["--set", s] for s in FAST), []),
                          "--set", "gate.max_metric=1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "best baseline seasonal_naive serves" in res.stdout
    _, _, stores, _ = open_project(proj)
    with stores:
        v = stores.metadata.resolve("walmart-weekly-sales", "production")
    assert v["kind"] == "baseline" and v["model_type"] == "seasonal_naive"


def test_config_typo_is_one_readable_line(tmp_path: Path, sample_dir: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    text = (proj / "cd4ml.yaml").read_text().replace("horizon: 39", "horizn: 39")
    (proj / "cd4ml.yaml").write_text(text)
    res = cli(proj, "run")
    assert res.returncode != 0
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "features.horizn" in line and "did you mean 'horizon'" in line


def test_bad_data_stops_the_run_and_keeps_the_store(project: Path, tmp_path: Path,
                                                    sample_dir: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    assert run_pipeline(proj, FAST).registered
    with zipfile.ZipFile(proj / "data" / "train.csv.zip") as z:
        text = z.read("train.csv").decode()
    lines = text.splitlines()
    lines[5] = ",".join(lines[5].split(",")[:3] + ["", lines[5].split(",")[4]])  # NaN target
    lines.append(lines[7])  # a duplicated key
    with zipfile.ZipFile(proj / "data" / "train.csv.zip", "w") as z:
        z.writestr("train.csv", "\n".join(lines) + "\n")
    res = cli(proj, "run", *sum((["--set", s] for s in FAST), []))
    assert res.returncode == 1
    assert "Weekly_Sales" in res.stderr and "duplicated" in res.stderr
    _, _, stores, _ = open_project(proj)
    with stores:
        assert [v["version"] for v in stores.metadata.list_versions()] == [1]
        runs = stores.metadata.list_runs()
    assert runs[0]["status"] == "failed" and "Weekly_Sales" in runs[0]["error"]


def test_missing_file_is_a_clear_error(tmp_path: Path, sample_dir: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    (proj / "data" / "stores.csv").unlink()
    res = cli(proj, "run")
    assert res.returncode == 1
    assert "stores.csv" in res.stderr and "not found" in res.stderr


def test_run_json_is_one_document_on_stdout(project: Path) -> None:
    res = subprocess.run([*CLI, "run", "-p", str(project), "--json", *sum(
        (["--set", s] for s in FAST), [])], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["up_to_date"] is True and doc["gate"]["passed"] in (True, False)
    assert "cached" in res.stderr  # progress goes to stderr
