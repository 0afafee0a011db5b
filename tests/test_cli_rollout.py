"""``cd4ml deploy``, ``cd4ml rollout …`` and ``cd4ml rollback`` on a real trained project
(wine): a canary walked through its steps, paused, aborted and rolled back, each change
audited with its actor; every bad input one line on stderr, exit 1, nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_in_process
from tabular_projects import wine_rollout_project

NAME = "wine"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1: the baseline served because nothing passed; v2: a candidate that passed
    (production); v3: a version whose gate failed."""
    return wine_rollout_project(tmp_path_factory.mktemp("rollout"))


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, proj: Path,
        *args: str) -> tuple[int, str, str]:
    """Run ``cd4ml ARGS -p PROJ`` in process: (exit code, stdout, stderr)."""
    return cli_in_process(capsys, monkeypatch, *args, "-p", str(proj))


def status(capsys: Any, monkeypatch: Any, proj: Path) -> dict[str, Any]:
    code, out, err = cli(capsys, monkeypatch, proj, "rollout", "status", NAME, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_canary_through_the_cli(project: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("CD4ML_ACTOR", "ann")
    doc = status(capsys, monkeypatch, project)  # nothing stored: serving.alias
    assert (doc["stored"], doc["strategy"], doc["revision"]) == (False, "single", 0)
    assert doc["arms"] == [{"version": 2, "role": "stable", "share": 1.0, "gate": "passed"}]

    code, out, err = cli(capsys, monkeypatch, project, "deploy", NAME, "--alias", "production",
                         "--strategy", "canary", "--steps", "0.1,0.5,1",
                         "--automation", "assisted", "--reason", "try canaries")
    assert code == 0, err
    assert out.startswith("wine (revision 1, wine@production, assisted): canary stable")
    code, out, _ = cli(capsys, monkeypatch, project, "rollout", "candidate", NAME, "1")
    assert code == 0 and "v1 canary 10 %" in out  # the baseline may take live traffic
    code, out, _ = cli(capsys, monkeypatch, project, "rollout", "promote", NAME)
    assert code == 0 and "v2 stable 50 %, v1 canary 50 %" in out
    code, out, _ = cli(capsys, monkeypatch, project, "rollout", "pause", NAME,
                       "--reason", "looking at latency")
    assert code == 0 and "canary paused" in out
    code, out, _ = cli(capsys, monkeypatch, project, "rollout", "abort", NAME)
    assert code == 0 and out.rstrip().endswith("canary aborted: v2 stable 100 %")
    code, out, _ = cli(capsys, monkeypatch, project, "rollback", NAME, "--to", "3")
    assert code == 0 and "revision 6" in out and "v1 canary 50 %" in out
    code, out, _ = cli(capsys, monkeypatch, project, "rollback", NAME)
    assert code == 0 and "revision 7" in out and "aborted" in out

    doc = status(capsys, monkeypatch, project)
    assert doc["stored"] and doc["revision"] == 7 and doc["shares"] == {"v2": 1.0}
    hist = doc["history"]
    assert [(h["revision"], h["action"]) for h in hist] == [
        (1, "configure"), (2, "candidate"), (3, "promote"), (4, "pause"), (5, "abort"),
        (6, "rollback"), (7, "rollback")]
    assert {h["actor"] for h in hist} == {"ann"}
    assert hist[0]["reason"] == "try canaries" and hist[3]["reason"] == "looking at latency"
    assert hist[0]["from_state"]["extra"] == {"default": True}
    code, out, _ = cli(capsys, monkeypatch, project, "rollout", "status")
    assert code == 0 and out.count("\n") == 1 and out.startswith("wine (revision 7")

    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    cfg, _ = load_config(project)
    with open_stores(cfg.store, project) as stores:
        audit = stores.metadata.list_audit(object="deployment:wine")
    assert [a["action"] for a in audit][-2:] == ["deployment_candidate", "deployment_configure"]
    assert {a["actor"] for a in audit} == {"ann"}


@pytest.mark.parametrize("args, message", [
    (["rollout", "candidate", NAME, "9"], "model 'wine' has no version 9"),
    (["rollout", "candidate", NAME, "3"], "version = 3: v3's gate is failed: it may only"),
    (["deploy", NAME, "--strategy", "canary", "--steps", "0.1,0.5"],
     "steps = [0.1, 0.5]: ends at 0.5: the schedule must reach 1 (100 %) to finish"),
    (["deploy", NAME, "--strategy", "canary", "--steps", "5,25,100"],
     "each step is a share in (0, 1]"),
    (["deploy", NAME, "--strategy", "canary", "--steps", "a,b"], "--steps = 'a,b'"),
    (["deploy", NAME, "--strategy", "rainbow"], "strategy = 'rainbow': expected one of"),
    (["deploy", NAME, "--strategy", "ab", "--split", "1.5"], "split = 1.5"),
    (["deploy", NAME, "--alias", "staging"], "deployment 'wine' tracks alias 'production'"),
    (["deploy", "other", "--alias", "typo"], "model 'wine' has no alias 'typo'; aliases: "),
    (["rollout", "promote", NAME], "no rollout of deployment 'wine' is in progress to promote"),
    (["rollout", "status", "nope"], "no deployment 'nope'; deployments: wine"),
    (["rollback", "nope"], "deployment 'nope' has no history to roll back"),
])
def test_bad_input_is_one_line_and_changes_nothing(project: Path, capsys: Any,
                                                    monkeypatch: Any, args: list[str],
                                                    message: str) -> None:
    before = status(capsys, monkeypatch, project)
    code, out, err = cli(capsys, monkeypatch, project, *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    after = status(capsys, monkeypatch, project)
    assert after == before


def test_a_refusal_from_a_real_process(project: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "rollout", "candidate", NAME,
                          "3", "-p", str(project)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("error: version = 3: v3's gate is failed")
    assert res.stderr.count("\n") == 1


def test_each_change_answers_one_json_document(project: Path, capsys: Any,
                                               monkeypatch: Any) -> None:
    """--json: the deployment's state after the change, as rollout status gives it."""
    revision = status(capsys, monkeypatch, project)["revision"]
    for args, doc_status in [
            (["deploy", NAME, "--strategy", "canary", "--steps", "0.1,0.5,1"], "stable"),
            (["rollout", "candidate", NAME, "1"], "progressing"),
            (["rollout", "promote", NAME], "progressing"),
            (["rollout", "pause", NAME], "paused"),
            (["rollback", NAME], "progressing"),
            (["rollout", "abort", NAME], "aborted")]:
        code, out, err = cli(capsys, monkeypatch, project, *args, "--json")
        assert code == 0, err
        doc = json.loads(out)
        revision += 1
        assert (doc["name"], doc["revision"], doc["status"]) == (NAME, revision, doc_status)
        assert doc == {k: v for k, v in status(capsys, monkeypatch, project).items()
                       if k not in ("history", "controller")}


def test_set_reaches_the_store_and_models_shows_the_projects_metric(
        project: Path, capsys: Any, monkeypatch: Any, tmp_path: Path) -> None:
    assert status(capsys, monkeypatch, project)["stored"]
    elsewhere = f"store.metadata_url=sqlite:///{tmp_path / 'empty.db'}"
    code, out, err = cli(capsys, monkeypatch, project, "rollout", "status", NAME, "--set",
                         elsewhere, "--json")
    doc = json.loads(out)  # an empty store: nothing deployed, nothing registered
    assert code == 0 and (doc["stored"], doc["revision"], doc["arms"]) == (False, 0, [])
    code, out, _ = cli(capsys, monkeypatch, project, "models")
    header = out.splitlines()[1].split()
    assert code == 0 and "log_loss" in header and "wmae" not in header  # wine's metric
