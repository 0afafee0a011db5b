"""Killing a run mid-way, two runs at once, and the pipeline on PostgreSQL metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, make_project
from store_fixtures import pg_schema

from cd4ml.errors import LockedError
from cd4ml.pipeline.run import open_project, run_pipeline
from cd4ml.store import project_lock

CLI = [sys.executable, "-m", "cd4ml.cli"]
SETS = sum((["--set", s] for s in FAST), [])


def _check_consistent(proj: Path) -> None:
    _, _, stores, _ = open_project(proj)
    with stores:
        versions = stores.metadata.list_versions()
        assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
        for v in versions:  # every registered bundle is whole and verifies
            stores.artifacts.verify(v["digest"])
        if stores.metadata.engine.dialect.name == "sqlite":
            with stores.metadata.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_kill_during_a_run_leaves_no_half_registered_model(sample_dir: Path,
                                                           tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    proc = subprocess.Popen([*CLI, "run", "-p", str(proj), *SETS], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while "holdout:selected" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "holdout:selected" in seen, seen
    _check_consistent(proj)
    _, _, stores, _ = open_project(proj)
    with stores:
        assert stores.metadata.list_versions() == []
        assert stores.metadata.list_runs()[0]["status"] == "running"  # killed: never finished
    out = run_pipeline(proj, FAST)  # the next run picks up from the cache and finishes
    assert out.registered and out.registered["version"] == 1
    ran = {s.name for s in out.stages if s.status == "ran"}
    assert "panel" not in ran and "gate" in ran
    _check_consistent(proj)
    _, _, stores, _ = open_project(proj)
    with stores:
        killed = stores.metadata.list_runs()[-1]
    assert killed["status"] == "failed" and "interrupted" in killed["error"]


def test_a_second_run_at_once_fails_clearly(sample_dir: Path, tmp_path: Path) -> None:
    proj = make_project(tmp_path, sample_dir)
    with project_lock(proj / ".cd4ml" / "run.lock"):
        res = subprocess.run([*CLI, "run", "-p", str(proj)], capture_output=True, text=True)
        with pytest.raises(LockedError):
            run_pipeline(proj, FAST)
    assert res.returncode == 1
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "another cd4ml run holds" in line
    assert str(os.getpid()) in line
    assert run_pipeline(proj, FAST).registered  # and once the lock is free, it runs


@pytest.mark.postgres
def test_pipeline_on_postgres_metadata(sample_dir: Path, tmp_path: Path) -> None:
    with pg_schema() as url:
        proj = make_project(tmp_path, sample_dir)
        sets = [*FAST, f"store.metadata_url={url}"]
        first = run_pipeline(proj, sets)
        assert first.registered and first.registered["version"] == 1
        again = run_pipeline(proj, sets)
        assert again.up_to_date
        _, _, stores, _ = open_project(proj, sets)
        with stores:
            assert stores.metadata.engine.dialect.name == "postgresql"
            assert stores.metadata.resolve("walmart-weekly-sales", "production")["version"] == 1
