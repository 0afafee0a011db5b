"""`cd4ml promote` against a run in progress, and against another promote, as real processes.

A manual rollback made while a run trains must stand when the run ends: the run moves
the alias only from the version it found when it started, registers its version anyway
and says that it did not move the alias. Two promotes from the same version: one wins,
the other fails with one line naming the alias, the version it expected and the one found.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import FAST, make_project

from cd4ml.pipeline.run import open_project, run_pipeline

CLI = [sys.executable, "-m", "cd4ml.cli"]
MODEL = "walmart-weekly-sales"


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def _promote(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "promote", MODEL, *args, "-p", str(proj)],
                          capture_output=True, text=True, timeout=120)


def _metadata(proj: Path):  # type: ignore[no-untyped-def]
    return open_project(proj)[2]


@pytest.fixture(scope="module")
def project(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two registered versions (seeds 0 and 1); production on v2."""
    proj = make_project(tmp_path_factory.mktemp("race"), sample_dir)
    for seed in (0, 1):
        out = run_pipeline(proj, [*FAST, f"models.seed={seed}"])
        assert out.registered and out.registered["new"], out.message
    with _metadata(proj) as stores:
        assert stores.metadata.alias_version(MODEL, "production") == 2
    return proj


def test_a_rollback_during_a_run_stands_and_the_run_says_so(project: Path) -> None:
    run = subprocess.Popen([*CLI, "run", "-p", str(project), "--json",
                            *_sets([*FAST, "models.seed=2"])],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    try:
        assert run.stderr is not None
        for line in run.stderr:  # progress lines: '▶ stage …'
            stderr.append(line)
            if line.startswith("▶ candidate:"):
                break
        else:
            pytest.fail(f"the run never started training: {''.join(stderr)[-2000:]}")
        # the run is training, with production on v2: freeze it while someone rolls back
        os.kill(run.pid, signal.SIGSTOP)
        try:
            back = _promote(project, "1", "--reason", "rollback: v2 misbehaves")
        finally:
            os.kill(run.pid, signal.SIGCONT)
        assert back.returncode == 0, back.stderr
        assert "walmart-weekly-sales@production → v1 (was v2)" in back.stdout
        rest = threading.Thread(target=lambda: stderr.extend(run.stderr or []))
        rest.start()
        stdout = run.communicate(timeout=600)[0]
        rest.join(10)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, "".join(stderr)[-3000:]
    outcome = json.loads(stdout)
    reg = outcome["registered"]
    assert reg["new"] and reg["version"] == 3 and reg["alias"] is None
    assert reg["alias_refused"] == {"alias": "production", "expected": 2, "found": 1}
    assert ("production NOT moved to v3: it was v2 when this run started and is v1 now"
            in outcome["message"])
    assert "cd4ml promote walmart-weekly-sales 3 --alias production --expect 1" \
        in outcome["message"]
    with _metadata(project) as stores:
        md = stores.metadata
        assert md.alias_version(MODEL, "production") == 1  # the manual move stands
        assert md.resolve(MODEL, 3)["run_id"] == outcome["run_id"]
        events = md.list_audit(object=f"{MODEL}@production")
        run_row = md.get_run(outcome["run_id"])
    refusal, rollback = events[0], events[1]
    assert refusal["action"] == "set_alias_refused" and refusal["actor"] == "cd4ml run"
    assert refusal["detail"] == {"version": 3, "expected": 2, "found": 1}
    assert rollback["action"] == "set_alias" and rollback["reason"] == "rollback: v2 misbehaves"
    assert rollback["detail"] == {"version": 1, "previous": 2, "expected": 2}
    assert run_row["summary"]["registered"]["alias_refused"]["found"] == 1
    assert run_row["summary"]["alias_at_start"] == {"production": 2}


def test_two_promotes_from_the_same_version_at_once(project: Path) -> None:
    with _metadata(project) as stores:
        start = stores.metadata.alias_version(MODEL, "production")
    targets = [v for v in (1, 2, 3) if v != start][:2]
    procs = [subprocess.Popen([*CLI, "promote", MODEL, str(v), "--expect", str(start),
                               "-p", str(project)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for v in targets]
    done = [(p.communicate(timeout=120), p.returncode) for p in procs]
    codes = sorted(code for _, code in done)
    assert codes == [0, 1], done
    (_, err), _ = next(d for d in done if d[1] == 1)
    with _metadata(project) as stores:
        now = stores.metadata.alias_version(MODEL, "production")
        refusals = [e for e in stores.metadata.list_audit(object=f"{MODEL}@production")
                    if e["action"] == "set_alias_refused" and e["actor"] != "cd4ml run"]
    assert now in targets
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {MODEL}@production not moved to v")
    assert f"expected it at v{start}, found v{now}" in lines[0]
    assert refusals[0]["detail"]["expected"] == start and refusals[0]["detail"]["found"] == now


def test_promote_with_a_stale_expect_fails_in_one_line_and_changes_nothing(
        project: Path) -> None:
    with _metadata(project) as stores:
        now = stores.metadata.alias_version(MODEL, "production")
    other = 1 if now != 1 else 2
    stale = 3 if now != 3 else 2
    res = _promote(project, str(other), "--expect", str(stale))
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == (
        f"error: {MODEL}@production not moved to v{other}: expected it at v{stale}, found "
        f"v{now} (moved by someone else meanwhile; check `cd4ml models` and retry)")
    ok = _promote(project, str(other), "--expect", str(now))
    assert ok.returncode == 0 and f"→ v{other} (was v{now})" in ok.stdout
    first = _promote(project, "1", "--alias", "canary")  # an unset alias: expected unset
    assert first.returncode == 0 and "canary → v1" in first.stdout, first.stderr
