"""Hot swap on a real `cd4ml serve` process under continuous load: moving the production
alias swaps the version with zero failed requests; a version whose artifact does not
match its recorded hash is refused and the old one keeps serving."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import FAST, make_project, start_server, stop_server, wait_version

from cd4ml import predlog

NAME = "walmart-weekly-sales"
ROWS = [{"store": 1, "dept": d, "date": "2012-11-02"} for d in (1, 3, 8, 13)]


@pytest.fixture(scope="module")
def two_versions(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cd4ml.pipeline.run import run_pipeline

    proj = make_project(tmp_path_factory.mktemp("hotswap"), sample_dir)
    assert run_pipeline(proj, FAST).registered
    other = [*FAST[:1], "models.candidates.0.params.n_estimators=40", *FAST[1:]]
    assert run_pipeline(proj, other).registered  # version 2, promoted on its gate
    return proj


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", *args, "-p", str(proj)],
                          capture_output=True, text=True, timeout=120)


def _load(url: str, stop: threading.Event, seen: list) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            try:
                r = c.post("/predict", json=ROWS)
                seen.append((time.monotonic(), r.status_code,
                             r.json().get("version") if r.status_code == 200 else r.text))
            except httpx.HTTPError as exc:  # a refused or dropped connection is a failure
                seen.append((time.monotonic(), 0, repr(exc)))


def test_swap_under_load_fails_no_request(two_versions: Path) -> None:
    proc, url = start_server(two_versions, "--set", "serving.poll_interval_s=0.2")
    try:
        assert httpx.get(f"{url}/ready", timeout=5).json()["version"] == 2
        stop = threading.Event()
        per_thread: list[list] = [[] for _ in range(4)]
        threads = [threading.Thread(target=_load, args=(url, stop, s)) for s in per_thread]
        for t in threads:
            t.start()
        time.sleep(1.0)
        res = _cli(two_versions, "promote", NAME, "1", "--reason", "hot swap test")
        assert res.returncode == 0, res.stderr
        wait_version(url, 1)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        seen = [x for s in per_thread for x in s]
        failed = [x for x in seen if x[1] != 200]
        assert not failed, failed[:5]
        assert len(seen) > 50
        for s in per_thread:  # each client saw 2, then 1, and never 2 again after a 1
            versions = [v for _, _, v in s]
            assert versions[0] == 2 and versions[-1] == 1
            first_one = versions.index(1)
            assert set(versions[first_one:]) == {1}
        m = httpx.get(f"{url}/metrics", timeout=10).text
        assert "cd4ml_model_swaps_total 1.0" in m
        # the log attributes every prediction to the version that made it
        d = two_versions / ".cd4ml" / "predictions"
    finally:
        stop_server(proc)
    n1 = sum(r["n_rows"] for r in predlog.query(d, version=1))
    n2 = sum(r["n_rows"] for r in predlog.query(d, version=2))
    assert n1 == 4 * sum(1 for x in seen if x[2] == 1)
    assert n2 == 4 * sum(1 for x in seen if x[2] == 2)


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(
        two_versions: Path) -> None:
    from cd4ml.config import load_config
    from cd4ml.registry.bundle import read_manifest
    from cd4ml.store import open_stores

    assert _cli(two_versions, "promote", NAME, "1").returncode == 0
    proc, url = start_server(two_versions, "--set", "serving.poll_interval_s=0.2")
    cfg, _ = load_config(two_versions)
    with open_stores(cfg.store, two_versions) as st:
        digest = st.metadata.resolve(NAME, 2)["digest"]
        files = read_manifest(st.artifacts, digest)["predictor"]["files"]
    obj = next(iter(files.values()))
    path = two_versions / ".cd4ml" / "artifacts" / "objects" / obj[:2] / obj[2:]
    original = path.read_bytes()
    try:
        path.chmod(0o644)
        path.write_bytes(original[:-10] + b"tampered!!")
        assert _cli(two_versions, "promote", NAME, "2").returncode == 0
        deadline = time.monotonic() + 30
        while "cd4ml_model_load_failures_total 1.0" not in httpx.get(
                f"{url}/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the failed load was not reported"
            time.sleep(0.1)
        ready = httpx.get(f"{url}/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["version"] == 1
        assert httpx.post(f"{url}/predict", json=ROWS, timeout=10).json()["version"] == 1
        log = Path(proc.log_path).read_text()
        assert "model_load_failed" in log and "still serving version 1" in log
    finally:
        path.write_bytes(original)
        os.utime(path)
        stop_server(proc)
