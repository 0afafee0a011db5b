"""The prediction log under faults on real `cd4ml serve` processes: kill -9 under load,
a real full filesystem (a small tmpfs, as root), a damaged segment at startup, a huge
batch and a body padded to the limit, a log folder that cannot be written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import start_server, stop_server

from cd4ml import predlog

ROW = {"store": 1, "dept": 1, "date": "2012-11-02"}


def _mount_tmpfs(path: Path, *opts: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (this test runs as another user)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()["prediction_log"]


def test_kill_9_under_load_loses_at_most_the_tail_and_the_next_start_counts_it(
        trained_project: Path, tmp_path: Path) -> None:
    d = tmp_path / "log"
    proc, url = start_server(trained_project, "--set", f"serving.log.dir={d}",
                             "--set", "serving.log.max_unflushed=200",
                             "--set", "serving.log.flush_interval_ms=60000")
    answered = [0] * 4
    stop = threading.Event()

    def load(k: int) -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                try:
                    if c.post(f"{url}/predict", json=ROW).status_code == 200:
                        answered[k] += 1
                except httpx.HTTPError:
                    return  # killed
    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while sum(answered) < 700 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop_server(proc, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    on_disk = len(predlog.query(d))
    assert on_disk > 0 and on_disk < sum(answered) + 4
    st = subprocess.run([sys.executable, "-m", "cd4ml.cli", "log", "status", "-p",
                         str(trained_project), "--set", f"serving.log.dir={d}", "--json"],
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    lost = json.loads(st.stdout)["lost_total"]
    # every answered request is on disk or counted lost (plus at most the requests in
    # flight when the process died); what was lost is at most the tail held in memory
    assert sum(answered) <= on_disk + lost <= sum(answered) + 4
    assert lost <= 200


def test_a_full_filesystem_the_server_answers_counts_and_recovers(
        trained_project: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "size=8m")
    try:
        d = mnt / "log"
        proc, url = start_server(trained_project, "--set", f"serving.log.dir={d}",
                                 "--set", "serving.log.flush_interval_ms=20")
        try:
            for i in range(5):
                assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 200
            time.sleep(0.3)
            filler = mnt / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:  # fill the filesystem to the last byte
                for chunk in (1 << 16, 512, 1):
                    try:
                        while True:
                            os.write(fd, b"\0" * chunk)
                    except OSError:
                        pass
            finally:
                os.close(fd)
            padded = json.dumps(ROW).encode() + b" " * 60_000
            for i in range(40):
                res = httpx.post(f"{url}/predict", content=padded, timeout=10,
                                 headers={"content-type": "application/json",
                                          "x-request-id": f"full-{i}"})
                assert res.status_code == 200
            deadline = time.monotonic() + 10
            while _health(url)["write_errors"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            h = _health(url)
            assert h["write_errors"] >= 1 and h["dropped"] >= 1, h
            assert httpx.get(f"{url}/live", timeout=5).status_code == 200
            filler.unlink()  # space freed
            for i in range(5):
                assert httpx.post(f"{url}/predict", json=ROW, timeout=10, headers={
                    "x-request-id": f"after-{i}"}).status_code == 200
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "after-4" not in {
                    r["request_id"] for r in predlog.query(d)}:
                time.sleep(0.05)
            dropped = _health(url)["dropped"]
        finally:
            stop_server(proc)
        ids = [r["request_id"] for r in predlog.query(d)]
        assert ids[-5:] == [f"after-{i}" for i in range(5)]
        assert len(ids) == 50 - dropped
        assert predlog.status(d)["lost_total"] == dropped
    finally:
        _umount(mnt)


def test_a_damaged_segment_does_not_stop_the_server_and_is_reported(
        trained_project: Path, tmp_path: Path) -> None:
    d = tmp_path / "log"
    d.mkdir()
    (d / "seg-20261130T00-p1.db").write_bytes(b"PK\x03\x04 a zip, not a database" * 100)
    proc, url = start_server(trained_project, "--set", f"serving.log.dir={d}",
                             "--set", "serving.log.flush_interval_ms=20")
    try:
        assert _health(url)["set_aside"] == 1
        assert httpx.post(f"{url}/predict", json=ROW, timeout=10, headers={
            "x-request-id": "after-damage"}).status_code == 200
        res = httpx.post(f"{url}/feedback", json={"request_id": "after-damage",
                                                 "actual": 3.0}, timeout=10)
        assert res.status_code == 200, res.text
        assert "cd4ml_prediction_log_set_aside_files 1.0" in httpx.get(
            f"{url}/metrics", timeout=10).text
    finally:
        stop_server(proc)
    st = subprocess.run([sys.executable, "-m", "cd4ml.cli", "log", "status", "-p",
                         str(trained_project), "--set", f"serving.log.dir={d}"],
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    assert "set aside" in st.stdout and "seg-20261130T00-p1.db.corrupt-" in st.stdout
    assert "file is not a database" in st.stdout


def test_a_batch_of_max_batch_rows_and_a_body_near_the_limit_are_answered_and_logged(
        trained_project: Path, tmp_path: Path) -> None:
    d = tmp_path / "log"
    proc, url = start_server(trained_project, "--set", f"serving.log.dir={d}",
                             "--set", "serving.max_batch_rows=10000",
                             "--set", "serving.log.flush_interval_ms=20")
    try:
        rows = [{"store": 1, "dept": [1, 3, 95][i % 3], "date": "2012-11-02"}
                for i in range(10_000)]
        res = httpx.post(f"{url}/predict", json=rows, timeout=60,
                         headers={"x-request-id": "huge-batch"})
        assert res.status_code == 200 and len(res.json()["predictions"]) == 10_000
        padded = json.dumps(ROW).encode() + b" " * (10_000_000 - 100)
        res = httpx.post(f"{url}/predict", content=padded, timeout=60, headers={
            "content-type": "application/json", "x-request-id": "huge-body"})
        assert res.status_code == 200
        too_big = httpx.post(f"{url}/predict", content=padded + b" " * 200, timeout=60,
                             headers={"content-type": "application/json"})
        assert too_big.status_code == 413
    finally:
        stop_server(proc)
    got = {r["request_id"]: r for r in predlog.query(d)}
    assert got["huge-batch"]["n_rows"] == 10_000
    assert got["huge-body"]["request_length"] == len(padded)
    assert got["huge-body"]["request_sha256"] is not None
    assert sum(s["bytes"] for s in predlog.status(d)["segments"]) < 3_000_000


def test_a_log_folder_that_cannot_be_written_is_refused_in_one_line(
        trained_project: Path, tmp_path: Path) -> None:
    """Root passes chmod, so the folder is a read-only tmpfs mount (EROFS for anyone)."""
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "ro", "size=1m")
    try:
        from cd4ml.errors import ConfigError
        from cd4ml.predlog import PredictionLog

        with pytest.raises(ConfigError, match=r"serving\.log\.dir = .*Read-only file system"):
            PredictionLog(mnt / "log")
        res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "serve", "-p",
                              str(trained_project), "--port", "1", "--set",
                              f"serving.log.dir={mnt / 'log'}"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 1
        assert f"serving.log.dir = '{mnt / 'log'}'" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        _umount(mnt)
    assert shutil.disk_usage(tmp_path)  # the test folder is untouched
