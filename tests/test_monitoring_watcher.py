"""``cd4ml serve`` evaluates the alert rules by itself, in a process of its own, every
``monitoring.interval_s``, one evaluator per project at a time; it stops with the server."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
from conftest import start_server, stop_server
from tabular_projects import acs_path, acs_project

from cd4ml.pipeline.alerting import evaluate_under_lock
from cd4ml.pipeline.run import open_project, run_pipeline
from cd4ml.store import project_lock

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
RULES = {"monitoring": {"interval_s": 1, "alerts": {"rules": [
    {"name": "input_drift", "metric": "drift.columns", "threshold": 0, "min_rows": 200,
     "window": "1d"}]}}}


def _watchers(proj: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"monitor -p {proj.resolve()}"], capture_output=True,
                         text=True).stdout
    return out.split()


def test_serve_evaluates_alerts_in_its_own_process(tmp_path: Path) -> None:
    proj = acs_project(tmp_path / "acs", changes={"evaluation": {"bootstrap": 0}, **RULES})
    assert run_pipeline(proj).registered
    full = pd.read_parquet(acs_path())
    aged = full[full.year == 2018].sample(600, random_state=3)
    aged = aged.assign(AGEP=(aged.AGEP + 10).clip(upper=99))
    proc, url = start_server(proj)
    try:
        assert len(_watchers(proj)) == 1
        r = httpx.post(f"{url}/predict", json=aged[INPUTS].to_dict("records"), timeout=60)
        assert r.status_code == 200, r.text
        cfg, _, stores, _ = open_project(proj)
        deadline, firing = time.monotonic() + 60, []
        with stores:
            while time.monotonic() < deadline and not firing:
                time.sleep(0.5)
                firing = stores.metadata.list_alerts(states=["firing"])
            audit = stores.metadata.list_audit(limit=20)
        assert [a["rule"] for a in firing] == ["input_drift"], firing
        assert any(a["actor"] == "cd4ml monitor" and a["action"] == "alert_firing"
                   for a in audit)
        # while another process holds the project's monitor lock, an evaluation skips
        with project_lock(proj / ".cd4ml" / "monitor.lock", timeout_s=30):
            assert evaluate_under_lock(proj) is None
    finally:
        stop_server(proc)
    deadline = time.monotonic() + 15
    while _watchers(proj) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _watchers(proj) == []
