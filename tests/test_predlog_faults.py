"""The prediction log under faults, in one process: records past SQLite's blob limit,
huge bodies, a queue of big bodies, a slow or full disk (injected through the writer's
``connect=`` seam: real SQLite connections whose commits are held or whose file may not
grow), damaged segments, bad settings. Processes killed, a real full filesystem and a
real server are in test_predlog_processes.py."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cd4ml.config import ServingConfig, validate_config
from cd4ml.errors import ConfigError, LogFullError
from cd4ml.registry.loader import load_model
from cd4ml import predlog
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.predlog import PredictionLog
from cd4ml.predlog.segments import connect_segment, period_name, segment_path

NAME = "walmart-weekly-sales"
ROW = {"store": 1, "dept": 1, "date": "2012-11-02"}


@pytest.fixture(scope="module")
def model(trained_project: Path):
    return load_model(f"{NAME}@production", project_dir=trained_project)


def _rec(i: int, body: bytes = b"", n: int = 1, ts: float = 1_790_000_000.0,
         rid: str | None = None) -> predlog.LogRecord:
    return predlog.LogRecord(
        request_id=rid or f"r{i}", ts=ts + i, model="m", version=1, endpoint="/predict",
        latency_ms=0.1, records=[{"k": i}] * n, features=np.full((n, 3), i, np.float32),
        feature_names=["a", "b", "c"], outputs=np.full(n, float(i)),
        content_type="application/json", request=body)


def _lowered(limit: int):
    """Segments opened with SQLite's blob/row limit lowered on the writer's connection."""
    def connect(path: Path) -> sqlite3.Connection:
        con = connect_segment(path)
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
        return con
    return connect


def _wait(cond, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cond()


def test_records_past_sqlites_blob_limit_are_stored_truncated_and_the_writer_goes_on(
        tmp_path: Path) -> None:
    """Before: a flush whose block passed SQLite's limit was put back and retried
    forever (0 written, all dropped, never recovered). Now a flush is split by bytes,
    big bodies are stored truncated with their length and sha256, a record too big for
    any block is dropped and counted, and every later record is written."""
    d = tmp_path / "log"
    plog = PredictionLog(d, flush_interval_ms=20, max_stored_body_bytes=16_384,
                         connect=_lowered(100_000))
    big = [bytes([65 + i % 26]) * 300_000 for i in range(150)]
    for i, body in enumerate(big):
        assert plog.append(_rec(i, body))
    assert plog.flush()
    plog.append(_rec(150, n=20_000))  # 240 KB of outputs and rows: no block holds it
    for i in range(151, 171):
        plog.append(_rec(i, b'{"k": 1}'))
    assert plog.flush()
    plog.close()
    assert (plog.written, plog.dropped, plog.truncated) == (170, 1, 150)
    got = {r["request_id"]: r for r in predlog.query(d)}
    assert len(got) == 170 and "r150" not in got
    assert got["r7"]["request_length"] == 300_000
    assert got["r7"]["request_sha256"] == hashlib.sha256(big[7]).hexdigest()
    assert got["r160"]["request_length"] == 8 and got["r160"]["request_sha256"] is None
    df = predlog.predictions(d, with_request=True).set_index("request_id")
    assert df.loc["r7", "request"] == big[7][:16_384]
    assert df.loc["r7", "request_length"] == 300_000
    assert df.loc["r160", "request"] == b'{"k": 1}'
    with sqlite3.connect(predlog.segments(d)[0][1]) as con:
        sizes = [r[0] for r in con.execute(
            "SELECT length(meta) + length(inputs) + length(requests) + length(features) "
            "+ length(rows) + length(outputs) FROM blocks")]
    assert max(sizes) < 100_000 and len(sizes) > 10
    assert predlog.status(d)["lost_total"] == 1


def test_a_body_padded_to_10_mb_is_answered_and_stored_truncated(model, tmp_path: Path,
                                                                 ) -> None:
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=20)
    client = TestClient(create_app(ModelHolder(model), plog=plog))
    body = json.dumps(ROW).encode() + b" " * 9_900_000
    res = client.post("/predict", content=body, headers={"content-type": "application/json",
                                                         "x-request-id": "padded"})
    assert res.status_code == 200, res.text
    plog.close()
    (rec,) = predlog.query(plog.dir)
    assert rec["request_length"] == len(body)
    assert rec["request_sha256"] == hashlib.sha256(body).hexdigest()
    df = predlog.predictions(plog.dir, with_request=True)
    assert df["request"].iloc[0] == body[:64 << 10] and plog.truncated == 1
    seg = predlog.status(plog.dir)["segments"][0]
    assert seg["bytes"] < 1_000_000  # not 10 MB


class _HeldDisk:
    """Segments whose COMMIT waits until released: a disk that stopped answering (a
    real SQLite connection; the trace callback runs as the statement starts)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.commits = 0

    def connect(self, path: Path) -> sqlite3.Connection:
        con = connect_segment(path)

        def trace(sql: str) -> None:
            if sql == "COMMIT":
                self.commits += 1
                self.release.wait(30)
        con.set_trace_callback(trace)
        return con


def test_on_a_stalled_disk_append_never_waits_and_the_queue_is_bounded_in_bytes(
        tmp_path: Path) -> None:
    """Before: a full queue made append wait up to 1 s, on the event loop. Now, with
    the writer stuck in a commit, every append returns at once (the 300 below finish
    while the commit is still held) and what the log holds stays under both bounds."""
    disk = _HeldDisk()
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10, max_unflushed=100,
                         max_unflushed_bytes=3_000_000, connect=disk.connect)
    accepted = 0
    plog.append(_rec(0))
    _wait(lambda: disk.commits == 1)  # the writer is now inside its first commit
    held = []
    for i in range(1, 301):
        accepted += plog.append(_rec(i, b"x" * 200_000))
        held.append(plog.queued_bytes)
    assert disk.commits == 1 and plog.written == 0  # nothing waited for the disk
    # r0 (16 bytes) is in the held commit: 14 records of 200,016 bytes fit in 3,000,000
    assert max(held) <= 3_000_000 and accepted == 14
    assert plog.dropped == 300 - accepted
    assert plog.counts()["queued_bytes"] == held[-1]
    disk.release.set()
    plog.close()
    assert plog.written == accepted + 1
    assert predlog.status(plog.dir)["lost_total"] == plog.dropped


def test_when_full_reject_answers_503_with_retry_after_and_metrics_show_it(
        model, tmp_path: Path) -> None:
    disk = _HeldDisk()
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10, max_unflushed=4,
                         when_full="reject", connect=disk.connect)
    client = TestClient(create_app(ModelHolder(model), plog=plog))

    def predicted() -> float:  # rows counted as predicted on /predict (process-wide)
        return sum(float(line.rsplit(" ", 1)[1])
                   for line in client.get("/metrics").text.splitlines()
                   if line.startswith("cd4ml_predictions_total{")
                   and 'endpoint="/predict"' in line)

    before = predicted()
    assert client.post("/predict", json=ROW).status_code == 200
    _wait(lambda: disk.commits == 1)
    codes = [client.post("/predict", json=ROW).status_code for _ in range(10)]
    # one record in the held commit, three queued: the fourth bound; none waited
    assert codes == [200] * 3 + [503] * 7
    res = client.post("/predict", json=ROW)
    assert res.status_code == 503 and res.headers["retry-after"] == "1"
    assert "serving.log.when_full" in res.json()["detail"]
    assert client.get("/live").status_code == 200
    metrics = client.get("/metrics").text
    assert 'cd4ml_prediction_log_records{outcome="rejected"} 8.0' in metrics
    assert client.get("/health").json()["prediction_log"]["rejected"] == 8
    assert predicted() - before == 4  # a refused request is not counted as predicted
    with pytest.raises(LogFullError):
        plog.append(_rec(99))
    disk.release.set()
    plog.close()
    assert plog.written == 4 and plog.dropped == 0
    assert predlog.status(plog.dir)["lost_total"] == 0  # refused is not lost


def _full_disk(pages: list[int]):
    """Segments that may not grow past ``pages[0]`` pages: SQLite answers SQLITE_FULL
    ("database or disk is full") as on a full disk; raise it to free space."""
    def connect(path: Path) -> sqlite3.Connection:
        con = connect_segment(path)
        con.execute(f"PRAGMA max_page_count = {pages[0]}")
        return con
    return connect


def test_on_a_full_disk_the_server_answers_counts_what_it_lost_and_recovers(
        model, tmp_path: Path) -> None:
    pages = [12]
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10, connect=_full_disk(pages))
    client = TestClient(create_app(ModelHolder(model), plog=plog))
    big = json.dumps(ROW).encode() + b" " * 30_000
    for i in range(30):
        res = client.post("/predict", content=big, headers={
            "content-type": "application/json", "x-request-id": f"full-{i}"})
        assert res.status_code == 200
        plog.flush()
    health = client.get("/health").json()["prediction_log"]
    assert health["write_errors"] >= 1 and health["dropped"] >= 1
    assert 'cd4ml_prediction_log_write_errors' in client.get("/metrics").text
    pages[0] = 100_000  # space freed: the writer reopens and goes on
    for i in range(5):
        assert client.post("/predict", json=ROW, headers={
            "x-request-id": f"after-{i}"}).status_code == 200
    assert plog.flush()
    plog.close()
    ids = [r["request_id"] for r in predlog.query(plog.dir)]
    assert ids[-5:] == [f"after-{i}" for i in range(5)]
    assert len(ids) == 35 - plog.dropped
    assert predlog.status(plog.dir)["lost_total"] == plog.dropped


def _segment_with(d: Path, n: int, t0: float) -> Path:
    with PredictionLog(d, flush_interval_ms=5, clock=lambda: t0) as plog:
        for i in range(n):
            plog.append(_rec(i, b"{}", ts=t0, rid=f"{t0:.0f}-{i}"))
    return [p for _, p in predlog.segments(d) if period_name(t0, 24) in p.name][0]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_segment_is_set_aside_and_the_log_starts_and_answers(
        tmp_path: Path, damage: str) -> None:
    d = tmp_path / "log"
    t_old, t_bad = time.time() - 3 * 86400, time.time() - 86400  # within the retention
    _segment_with(d, 5, t_old)
    bad = _segment_with(d, 3000, t_bad)
    raw = bad.read_bytes()
    bad.write_bytes(b"not a database, " * 500 if damage == "garbage" else raw[:len(raw) // 2])
    with pytest.raises(sqlite3.DatabaseError):  # what stopped the log before
        sqlite3.connect(bad).execute("SELECT count(*) FROM blocks").fetchone()
    st = predlog.status(d)  # readers skip it and say why
    assert [s["problem"] is not None for s in st["segments"]] == [False, True]
    assert len(predlog.query(d)) == 5
    assert predlog.find_request(d, f"{t_old:.0f}-3")["inputs"] == {"k": [3]}
    with PredictionLog(d, flush_interval_ms=5) as plog:
        assert [x["file"] for x in plog.set_aside] == [bad.name]
        assert plog.counts()["set_aside"] == 1
        plog.append(_rec(7, rid="after"))
    st = predlog.status(d)
    (aside,) = st["set_aside"]
    assert aside["original"] == bad.name and aside["bytes"] == bad.with_name(
        aside["file"]).stat().st_size and aside["problem"]
    assert not bad.exists() and all(s["problem"] is None for s in st["segments"])
    assert {r["request_id"] for r in predlog.query(d)} >= {"after", f"{t_old:.0f}-0"}
    assert predlog.find_request(d, f"{t_bad:.0f}-3") is None


def test_a_damaged_file_at_the_writers_own_segment_is_set_aside_when_opened(
        tmp_path: Path) -> None:
    import os

    d = tmp_path / "log"
    now = 1_790_000_000.0
    plog = PredictionLog(d, flush_interval_ms=5, clock=lambda: now)
    own = segment_path(d, period_name(now, 24), os.getpid())
    own.write_bytes(b"\x00garbage" * 100)  # after the start check, before the first flush
    assert plog.append(_rec(1, ts=now))
    assert plog.flush()
    plog.close()
    assert plog.written == 1 and len(plog.set_aside) == 1
    assert [r["request_id"] for r in predlog.query(d)] == ["r1"]


def test_bad_log_settings_are_refused_naming_the_key_and_value(tmp_path: Path) -> None:
    raw = {"project": "p", "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s",
                                    "target": "y", "time": "t", "series": ["k"]}}
    limit = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    for key, value, says in [("max_unflushed", 0, "greater than or equal to 1"),
                             ("max_unflushed", -5, "greater than or equal to 1"),
                             ("max_unflushed_bytes", 0, "greater than or equal to 1"),
                             ("max_block_bytes", -1, "greater than or equal to 1"),
                             ("max_stored_body_bytes", 0, "greater than or equal to 1"),
                             ("max_block_bytes", limit, "below SQLite's limit"),
                             ("max_stored_body_bytes", 40 << 20, "at most half"),
                             ("when_full", "wait", "'drop' or 'reject'")]:
        with pytest.raises(ConfigError) as exc:
            validate_config({**raw, "serving": {"log": {key: value}}})
        assert f"serving.log.{key} = {value!r}" in str(exc.value) and says in str(exc.value)
        kw = {key: value}
        with pytest.raises(ConfigError, match=rf"serving\.log\.{key} = "):
            PredictionLog(tmp_path / "log", **kw)
    assert not any((tmp_path / "log").glob("seg-*"))


def test_the_cli_refuses_a_bad_log_setting_in_one_line(trained_project: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "log", "status", "-p",
                          str(trained_project), "--set", "serving.log.max_unflushed=0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "serving.log.max_unflushed = 0" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_feedback_answers_503_when_the_disk_refuses_it(model, tmp_path: Path) -> None:
    pages = [100_000]
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10, connect=_full_disk(pages))
    client = TestClient(create_app(ModelHolder(model), plog=plog,
                                   settings=ServingConfig()))
    assert client.post("/predict", json=ROW, headers={"x-request-id": "fb"}).status_code == 200
    assert plog.flush()
    pages[0] = 1  # no page more than the segment has: the next write that needs one fails
    many = [{**ROW, "actual": float(i)} for i in range(3000)]
    res = client.post("/feedback", json=many)
    assert res.status_code == 503 and "retry later" in res.json()["detail"]
    assert res.headers["retry-after"] == "1"
    pages[0] = 100_000
    assert client.post("/feedback", json={"request_id": "fb", "actual": 1.0}).json() == {
        "accepted": 1}
    plog.close()


def test_a_segment_found_damaged_by_feedback_is_set_aside_and_feedback_answers(
        model, tmp_path: Path) -> None:
    d = tmp_path / "log"
    plog = PredictionLog(d, flush_interval_ms=10)
    client = TestClient(create_app(ModelHolder(model), plog=plog))
    assert client.post("/predict", json=ROW, headers={"x-request-id": "ok"}).status_code == 200
    assert plog.flush()
    # a damaged segment of a later period than any other: the lookup visits it first
    (d / "seg-20991231T00-p1.db").write_bytes(b"damaged after the start " * 50)
    res = client.post("/feedback", json={"request_id": "ok", "actual": 1.0})
    assert res.status_code == 200, res.text
    assert [x["file"] for x in plog.set_aside] == ["seg-20991231T00-p1.db"]
    assert client.get("/health").json()["prediction_log"]["set_aside"] == 1
    plog.close()
    assert [x["original"] for x in predlog.status(d)["set_aside"]] == ["seg-20991231T00-p1.db"]


def test_a_record_after_close_is_dropped_and_counted_not_an_error(model,
                                                                  tmp_path: Path) -> None:
    """A request still finishing while the app shuts down (its log closed) is answered;
    its record is dropped and counted, not a 500 from a released count file."""
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10)
    client = TestClient(create_app(ModelHolder(model), plog=plog))
    assert client.post("/predict", json=ROW).status_code == 200
    plog.close()
    assert plog.append(_rec(1)) is False and plog.dropped == 1
    assert client.post("/predict", json=ROW).status_code == 200
    assert plog.dropped == 2 and plog.written == 1


def test_the_log_is_placed_by_url_and_dir_is_still_accepted(tmp_path: Path) -> None:
    """``serving.log.url`` (a folder path or file://PATH) names the log's folder; the older
    ``serving.log.dir`` still does; an unknown scheme, an empty URL, or the two naming
    different folders are refused naming the key and value."""
    raw = {"project": "p", "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s",
                                    "target": "y", "time": "t", "series": ["k"]}}

    def log_cfg(**log):  # type: ignore[no-untyped-def]
        return validate_config({**raw, "serving": {"log": log}}).serving.log

    assert log_cfg().folder_in(tmp_path) == tmp_path / ".cd4ml" / "predictions"
    assert log_cfg(dir="logs").folder_in(tmp_path) == tmp_path / "logs"
    assert log_cfg(url="logs").folder_in(tmp_path) == tmp_path / "logs"
    assert log_cfg(url=f"file://{tmp_path}/abs").folder_in("/elsewhere") == tmp_path / "abs"
    assert log_cfg(url="file://rel/x").folder_in(tmp_path) == tmp_path / "rel" / "x"
    assert log_cfg(url="logs", dir="logs").folder == "logs"
    for value, says in [("s3://bucket/log", "unknown prediction log scheme 's3'"),
                        ("postgresql://h/db", "unknown prediction log scheme 'postgresql'"),
                        ("file://", "names no folder"), ("  ", "names no folder")]:
        with pytest.raises(ConfigError) as exc:
            log_cfg(url=value)
        assert f"serving.log.url = {value!r}" in str(exc.value) and says in str(exc.value)
    with pytest.raises(ConfigError, match="name different places; give one of them"):
        log_cfg(url="a", dir="b")


def test_the_cli_reads_the_log_where_its_url_says(trained_project: Path, tmp_path: Path,
                                                  ) -> None:
    d = tmp_path / "by-url"
    plog = PredictionLog(d)
    plog.close()
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "log", "status", "-p",
                          str(trained_project), "--json", "--set",
                          f"serving.log.url=file://{d}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert str(d) in res.stdout
    bad = subprocess.run([sys.executable, "-m", "cd4ml.cli", "log", "status", "-p",
                          str(trained_project), "--set", "serving.log.url=s3://b/p"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "unknown prediction log scheme 's3'" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
