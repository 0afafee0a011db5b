"""The prediction log: what is written, queries, rotation and retention, crash losses,
feedback, export. Real model, real SQLite files, real processes killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cd4ml.registry.loader import load_model
from cd4ml import predlog
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.predlog import PredictionLog
from cd4ml.predlog.segments import period_name, segment_path

NAME = "walmart-weekly-sales"
ROWS = [{"store": 1, "dept": 1, "date": "2012-11-02"},
        {"store": 1, "dept": 95, "date": "2013-01-04"},
        {"store": 1, "dept": 3, "date": "2012-06-01"}]


@pytest.fixture(scope="module")
def project(trained_project: Path) -> Path:
    return trained_project


@pytest.fixture(scope="module")
def model(project: Path):
    return load_model(f"{NAME}@production", project_dir=project)


@pytest.fixture()
def logged(model, tmp_path: Path):
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=20)
    client = TestClient(create_app(ModelHolder(model), plog=plog))
    yield client, plog
    plog.close()


def test_every_protocol_logs_what_the_model_saw(logged, model) -> None:
    client, plog = logged
    r1 = client.post("/predict", json=ROWS, headers={"x-request-id": "req-native"})
    r2 = client.post("/invocations", json={"dataframe_records": ROWS[:1]},
                     headers={"x-request-id": "req-mlflow"})
    v2 = {"inputs": [{"name": "store", "datatype": "INT64", "shape": [1], "data": [1]},
                     {"name": "dept", "datatype": "INT64", "shape": [1], "data": [3]},
                     {"name": "date", "datatype": "BYTES", "shape": [1],
                      "data": ["2012-06-01"]}]}
    r3 = client.post(f"/v2/models/{NAME}/infer", json=v2, headers={"x-request-id": "req-v2"})
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    # bad requests are answered 4xx and never logged
    assert client.post("/predict", json={"store": 1}).status_code == 422
    assert plog.flush()
    recs = {r["request_id"]: r for r in predlog.query(plog.dir)}
    assert set(recs) == {"req-native", "req-mlflow", "req-v2"}
    nat = recs["req-native"]
    assert nat["model"] == NAME and nat["version"] == model.version and nat["n_rows"] == 3
    assert nat["inputs"] == {"store": [1, 1, 1], "dept": [1, 95, 3],
                             "date": [r["date"] for r in ROWS]}
    assert nat["outputs"] == pytest.approx(r1.json()["predictions"])
    assert recs["req-v2"]["endpoint"] == "/v2/infer"
    # the feature vectors are the rows the shared feature code computed for the model
    df = predlog.predictions(plog.dir, with_request=True)
    nd = df[df.request_id == "req-native"].sort_values("row")
    feats = nd[[f"feature.{n}" for n in model.predictor.feature_names]].to_numpy()
    np.testing.assert_array_equal(feats, model.X[model.rows_for(ROWS)])
    assert json.loads(nd["request"].iloc[0]) == ROWS  # the body as received
    assert (nd["latency_ms"] > 0).all()


def test_the_web_form_logs_its_forecasts(logged) -> None:
    client, plog = logged
    page = client.get("/?store=1&dept=3&date=2012-06-01", headers={"x-request-id": "form-1"})
    assert page.status_code == 200 and 'id="forecast"' in page.text
    assert client.get("/?store=1&dept=3&date=2012-06-02").status_code == 422  # not logged
    assert plog.flush()
    recs = predlog.query(plog.dir)
    assert [(r["request_id"], r["endpoint"]) for r in recs] == [("form-1", "/")]
    assert recs[0]["inputs"] == {"store": [1], "dept": [3], "date": ["2012-06-01"]}


def test_query_by_window_and_version(model, tmp_path: Path) -> None:
    now = [1_790_000_000.0]
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=10, rotate_hours=1,
                         clock=lambda: now[0])
    X = model.X[:2]
    for i, (t, v) in enumerate([(0, 1), (1800, 1), (3700, 2), (7300, 2)]):
        now[0] = 1_790_000_000.0 + t
        plog.append(predlog.LogRecord(
            request_id=f"r{i}", ts=now[0], model=NAME, version=v, endpoint="/predict",
            latency_ms=1.0, records=ROWS[:2], features=X,
            feature_names=model.predictor.feature_names, outputs=np.array([1.0, 2.0])))
        assert plog.flush()
    plog.close()
    assert len(predlog.segments(tmp_path / "log")) == 3  # rotated every hour
    t0 = 1_790_000_000.0
    assert [r["request_id"] for r in predlog.query(tmp_path / "log")] == ["r0", "r1", "r2",
                                                                           "r3"]
    assert [r["request_id"] for r in predlog.query(tmp_path / "log", since=t0 + 1000,
                                                   until=t0 + 7000)] == ["r1", "r2"]
    assert [r["request_id"] for r in predlog.query(tmp_path / "log", version=2)] == ["r2",
                                                                                      "r3"]
    # retention: a writer opened three hours later deletes the segments that are too old
    later = PredictionLog(tmp_path / "log", rotate_hours=1, retention_days=1 / 24,
                          clock=lambda: t0 + 3 * 3600 + 10)
    later.close()
    assert [r["request_id"] for r in predlog.query(tmp_path / "log")] == ["r3"]


_KILLED = textwrap.dedent("""
    import os, signal, sys, numpy as np
    from cd4ml.predlog import PredictionLog, LogRecord
    d, flushed, unflushed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    log = PredictionLog(d, flush_interval_ms=60_000, max_unflushed=10_000)
    def rec(i):
        return LogRecord(request_id=f"r{i}", ts=1.0 * i, model="m", version=1,
                         endpoint="/predict", latency_ms=0.1,
                         records=[{"k": i}], features=np.zeros((1, 3), np.float32),
                         feature_names=["a", "b", "c"], outputs=np.array([float(i)]))
    for i in range(flushed):
        log.append(rec(i))
    assert log.flush()
    for i in range(flushed, flushed + unflushed):
        log.append(rec(i))
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_count_file_holds_every_accepted_record(tmp_path: Path) -> None:
    """What a crash is measured against: after each append, the writer's count file holds
    the number of records accepted so far, whether the append took the common path (room
    in the queue), the one that wakes the writer (half full and more), or found the log
    full and dropped the record (answered, so accepted, and counted as lost)."""
    import struct

    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000, max_unflushed=4)
    (cnt,) = (tmp_path / "log" / "sessions").glob("*.cnt")
    for i in range(1, 10):
        plog.append(predlog.LogRecord(
            request_id=f"r{i}", ts=1.0 * i, model="m", version=1, endpoint="/predict",
            latency_ms=0.1, records=[{"k": i}], features=np.zeros((1, 3), np.float32),
            feature_names=["a", "b", "c"], outputs=np.array([float(i)])))
        assert struct.unpack("=Q", cnt.read_bytes())[0] == i
    plog.close()
    assert plog.written + plog.dropped == 9
    assert len(predlog.query(tmp_path / "log")) == plog.written
    assert predlog.status(tmp_path / "log")["lost_total"] == plog.dropped


def test_kill_9_loses_only_the_unflushed_tail_and_counts_it(tmp_path: Path) -> None:
    d = tmp_path / "log"
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(d), "40", "7"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(predlog.query(d)) == 40  # what was flushed survived
    st = predlog.status(d)
    assert st["lost_total"] == 0 and st["live_writers"]  # not yet noticed: its file remains
    found = predlog.recover_losses(d)
    assert [(x["accepted"], x["flushed"], x["lost"]) for x in found] == [(47, 40, 7)]
    st = predlog.status(d)
    assert st["lost_total"] == 7 and not st["live_writers"]
    assert predlog.recover_losses(d) == []  # counted once
    # a clean close loses nothing and leaves no loss behind
    with PredictionLog(d, flush_interval_ms=5) as plog:
        pass
    assert predlog.status(d)["lost_total"] == 7 and plog.dropped == 0


def test_a_full_queue_drops_at_once_instead_of_growing_or_waiting(model, tmp_path: Path,
                                                                   ) -> None:
    """The queue never holds more than max_unflushed records (queued or being written);
    a record past it is dropped and counted, and append does not wait for the writer."""
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=50, max_unflushed=5)
    X = model.X[:1]
    accepted = 0
    for i in range(40):
        accepted += plog.append(predlog.LogRecord(
            request_id=f"r{i}", ts=float(i), model=NAME, version=1, endpoint="/predict",
            latency_ms=1.0, records=[{"store": 1}], features=X,
            feature_names=model.predictor.feature_names, outputs=np.array([1.0])))
        assert plog.queue_depth <= 5
    plog.close()
    assert accepted + plog.dropped == 40 and plog.dropped > 0
    assert len(predlog.query(tmp_path / "log")) == accepted == plog.written
    assert predlog.status(tmp_path / "log")["lost_total"] == plog.dropped


@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 700])
def test_a_flush_of_any_size_writes_every_record_in_order(model, tmp_path: Path, n: int,
                                                          ) -> None:
    """The writer inserts a flush with a few multi-row statements (256, 64, 16, 4, 1 rows)."""
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000, max_unflushed=1000)
    X = model.X[:n % 3 + 1]
    for i in range(n):
        plog.append(predlog.LogRecord(
            request_id=f"r{i:04d}", ts=1000.0 + i, model=NAME, version=1, endpoint="/predict",
            latency_ms=0.25 * i, records=ROWS[:len(X)],
            features=X + i, feature_names=model.predictor.feature_names,
            outputs=np.arange(len(X), dtype=np.float64) + i))
    assert plog.flush()
    plog.close()
    got = predlog.query(tmp_path / "log")
    assert [r["request_id"] for r in got] == [f"r{i:04d}" for i in range(n)]
    assert [r["latency_ms"] for r in got] == [0.25 * i for i in range(n)]
    last = predlog.predictions(tmp_path / "log")
    assert len(last) == n * len(X)
    assert np.array_equal(last["prediction"].to_numpy()[-len(X):],
                          np.arange(len(X), dtype=np.float64) + n - 1)


def test_feedback_by_request_id_and_by_keys(logged, model, tmp_path: Path) -> None:
    client, plog = logged
    one = client.post("/predict", json=ROWS[0], headers={"x-request-id": "fb-one"})
    many = client.post("/predict", json=ROWS, headers={"x-request-id": "fb-many"})
    assert one.status_code == many.status_code == 200
    ok = client.post("/feedback", json=[
        {"request_id": "fb-one", "actual": 100.0},
        {"request_id": "fb-many", "actuals": [1.0, 2.0, 3.0]},
        {"request_id": "fb-many", "row": 1, "reward": 0.5},
        {"store": 1, "dept": 3, "date": "2012-06-01", "actual": 33.0}])
    assert ok.status_code == 200 and ok.json() == {"accepted": 6}
    # unknown request id: 404 naming it; bad values: 422 naming the field
    res = client.post("/feedback", json={"request_id": "nope", "actual": 1.0})
    assert res.status_code == 404 and "'nope'" in res.json()["detail"]
    res = client.post("/feedback", json={"request_id": "fb-one", "actual": "NaN"})
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "actual"
    res = client.post("/feedback", json={"request_id": "fb-many", "actual": 5.0})
    assert res.status_code == 422 and "give 'row' from 0 to 2" in res.json()["detail"]
    res = client.post("/feedback", json={"request_id": "fb-many", "actuals": [1.0]})
    assert res.status_code == 422 and "give 3 actuals" in res.json()["detail"]
    res = client.post("/feedback", json={"store": 999, "dept": 1, "date": "2012-06-01",
                                         "actual": 1.0})
    assert res.status_code == 422 and "never seen" in res.json()["detail"]
    res = client.post("/feedback", json={"request_id": "fb-one"})
    assert res.status_code == 422 and "actual" in res.json()["detail"]
    assert client.post("/feedback", content=b"{", headers={
        "content-type": "application/json"}).status_code == 422
    # the export joins them: by id and row, and by keys + date for every matching row
    out = tmp_path / "export.parquet"
    assert predlog.export_parquet(plog.dir, out) == 4
    df = pq.read_table(out).to_pandas().set_index(["request_id", "row"])
    assert df.loc[("fb-one", 0), "actual"] == 100.0
    assert df.loc[("fb-many", 1), "actual"] == 2.0 and df.loc[("fb-many", 1), "reward"] == 0.5
    assert df.loc[("fb-many", 2), "actual"] == 3.0  # by id wins over keys + date (33.0)
    assert pd.isna(df.loc[("fb-many", 0), "reward"])
    assert {f"feature.{n}" for n in model.predictor.feature_names} <= set(df.columns)


def test_feedback_needs_the_log(model) -> None:
    client = TestClient(create_app(ModelHolder(model)))
    res = client.post("/feedback", json={"request_id": "x", "actual": 1.0})
    assert res.status_code == 503 and "serving.log.enabled" in res.json()["detail"]


def test_cli_query_status_export(project: Path, model, tmp_path: Path) -> None:
    d = project / ".cd4ml" / "predictions"
    with PredictionLog(d, flush_interval_ms=5) as plog:
        client = TestClient(create_app(ModelHolder(model), plog=plog))
        assert client.post("/predict", json=ROWS, headers={
            "x-request-id": "cli-1"}).status_code == 200
    cli = [sys.executable, "-m", "cd4ml.cli", "log"]
    q = subprocess.run([*cli, "query", "-p", str(project), "--since", "1h", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert q.returncode == 0, q.stderr
    assert [r["request_id"] for r in json.loads(q.stdout)] == ["cli-1"]
    bad = subprocess.run([*cli, "query", "-p", str(project), "--since", "yesterday"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "'yesterday'" in bad.stderr and "2h" in bad.stderr
    out = tmp_path / "x.parquet"
    ex = subprocess.run([*cli, "export", "-p", str(project), "-o", str(out), "--version",
                         str(model.version)], capture_output=True, text=True, timeout=60)
    assert ex.returncode == 0 and "3 prediction(s)" in ex.stdout, ex.stderr
    assert pq.read_table(out).num_rows == 3
    st = subprocess.run([*cli, "status", "-p", str(project), "--json"],
                        capture_output=True, text=True, timeout=60)
    assert json.loads(st.stdout)["lost_total"] == 0
    wrong = subprocess.run([*cli, "export", "-p", str(project), "-o", str(tmp_path / "x.csv")],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and ".parquet" in wrong.stderr
    assert not os.path.exists(tmp_path / "x.csv")


def test_cli_usage_errors_are_one_message_not_a_traceback(project: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "log", "query", "-p",
                          str(project), "--limit", "abc"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "Invalid value for '--limit'" in res.stderr
    assert "Traceback" not in res.stderr


def test_records_dropped_by_a_failing_writer_are_counted_even_mid_stream(
        model, tmp_path: Path) -> None:
    d = tmp_path / "log"
    now = 1_790_000_000.0
    blocker = segment_path(d, period_name(now, 24), os.getpid())  # written by this process
    blocker.mkdir(parents=True)  # SQLite cannot open a folder: every write fails
    plog = PredictionLog(d, flush_interval_ms=20, max_unflushed=2, clock=lambda: now)

    def rec(i: int) -> predlog.LogRecord:
        return predlog.LogRecord(
            request_id=f"r{i}", ts=now, model=NAME, version=1, endpoint="/predict",
            latency_ms=1.0, records=[{"store": 1}], features=model.X[:1],
            feature_names=model.predictor.feature_names, outputs=np.array([1.0]))

    for i in range(4):
        plog.append(rec(i))
    deadline = time.monotonic() + 10
    while plog.write_errors == 0 and time.monotonic() < deadline:  # the writer fails
        time.sleep(0.02)
    assert plog.dropped >= 1 and plog.write_errors >= 1
    blocker.rmdir()  # the disk recovers; later records are written after the gap
    assert plog.append(rec(99))
    plog.close()
    on_disk = len(predlog.query(d))
    st = predlog.status(d)
    assert on_disk == 5 - plog.dropped
    assert st["lost_total"] == plog.dropped == 5 - on_disk


_OTHER_WORKER = textwrap.dedent("""
    import sys, numpy as np
    from cd4ml.predlog import PredictionLog, LogRecord
    d, start, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    with PredictionLog(d, flush_interval_ms=5) as log:
        for i in range(n):
            log.append(LogRecord(request_id=f"w2-{i}", ts=start + 2 * i, model="m",
                                 version=1, endpoint="/predict", latency_ms=0.1,
                                 records=[{"k": i}], features=np.full((1, 3), i, np.float32),
                                 feature_names=["a", "b", "c"], outputs=np.array([float(i)])))
""")


def test_each_worker_writes_its_own_segment_and_readers_merge_them(tmp_path: Path) -> None:
    """Workers never wait on each other's commits: one segment per process and period."""
    d = tmp_path / "log"
    t0 = time.time()
    with PredictionLog(d, flush_interval_ms=5) as plog:
        for i in range(20):
            plog.append(predlog.LogRecord(
                request_id=f"w1-{i}", ts=t0 + 2 * i + 1, model="m", version=1,
                endpoint="/predict", latency_ms=0.1, records=[{"k": -i}],
                features=np.full((1, 3), -i, np.float32), feature_names=["a", "b", "c"],
                outputs=np.array([-float(i)])))
        proc = subprocess.run([sys.executable, "-c", _OTHER_WORKER, str(d), str(t0), "20"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    segs = [p.name for _, p in predlog.segments(d)]
    assert len(segs) == 2 and f"-p{os.getpid()}.db" in " ".join(segs)
    ids = [r["request_id"] for r in predlog.query(d)]
    assert ids == [f"w{w}-{i}" for i in range(20) for w in (2, 1)]  # merged in time order
    df = predlog.predictions(d)
    assert df["prediction"].tolist() == [float(s * i) for i in range(20) for s in (1, -1)]
    assert df["feature.a"].tolist() == df["prediction"].tolist()
    assert predlog.find_request(d, "w2-7")["inputs"] == {"k": [7]}
    assert predlog.find_request(d, "w1-7")["inputs"] == {"k": [-7]}
    st = predlog.status(d)
    assert sorted(s["requests"] for s in st["segments"]) == [20, 20]


def test_the_writer_is_woken_at_half_the_queue_before_any_request_waits(
        model, tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000, max_unflushed=10)
    for i in range(5):
        plog.append(predlog.LogRecord(
            request_id=f"r{i}", ts=1.0 + i, model=NAME, version=1, endpoint="/predict",
            latency_ms=1.0, records=ROWS[:1], features=model.X[:1],
            feature_names=model.predictor.feature_names, outputs=np.array([1.0])))
    deadline = time.monotonic() + 20
    while plog.written < 5 and time.monotonic() < deadline:  # not after the 60 s interval
        time.sleep(0.01)
    assert plog.written == 5
    plog.close()


def test_big_flushes_split_into_blocks_and_a_swap_inside_one_keeps_each_versions_features(
        model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cd4ml.predlog import blocks

    monkeypatch.setattr(blocks, "BLOCK_ROWS", 4)  # so that 7 records of 1-3 rows make 4
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000, max_unflushed=100)
    names = list(model.predictor.feature_names)
    for i in range(7):
        n = i % 3 + 1
        v, fn = (1, names) if i < 4 else (2, names[:3] + ["extra"])
        plog.append(predlog.LogRecord(
            request_id=f"r{i}", ts=100.0 + i, model=NAME, version=v, endpoint="/predict",
            latency_ms=1.0, records=ROWS[:n], features=np.full((n, len(fn)), i, np.float32),
            feature_names=fn, outputs=np.full(n, float(i))))
    assert plog.flush()
    plog.close()
    with closing(sqlite3.connect(predlog.segments(tmp_path / "log")[0][1])) as con:
        assert con.execute("SELECT count(*) FROM blocks").fetchone()[0] == 4
    df = predlog.predictions(tmp_path / "log")
    assert df["request_id"].tolist() == [f"r{i}" for i in range(7) for _ in range(i % 3 + 1)]
    assert df["row"].tolist() == [j for i in range(7) for j in range(i % 3 + 1)]
    v1, v2 = df[df.version == 1], df[df.version == 2]
    assert (v1[f"feature.{names[5]}"] == v1["prediction"]).all()
    assert v2[f"feature.{names[5]}"].isna().all() and v1["feature.extra"].isna().all()
    assert (v2["feature.extra"] == v2["prediction"]).all()
    assert (v2[f"feature.{names[0]}"] == v2["prediction"]).all()
    assert predlog.find_request(tmp_path / "log", "r5")["n_rows"] == 3
    assert [r["request_id"] for r in predlog.query(tmp_path / "log", version=2)] == [
        "r4", "r5", "r6"]


def test_made_id_times_agrees_with_made_id_time() -> None:
    """The writer's test of a flush's ids at once gives made_id_time's value for every
    id: on the fast path (all ids shaped like server-made ones) and off it."""
    import random

    from cd4ml.predlog.segments import made_id_time, made_id_times, new_request_id

    def ref(ids: list[str]) -> np.ndarray:
        return np.array([np.nan if made_id_time(i) is None else made_id_time(i) for i in ids])

    rnd = random.Random(7)
    made = [new_request_id() for _ in range(300)]
    assert np.array_equal(made_id_times(made), ref(made)) and np.isfinite(ref(made)).all()
    not_made = ["client-id", "", made[0].upper(), made[1][:31], made[2] + "0",
                "g" + made[3][1:], made[4][:12] + "X" + made[4][13:], made[5][:5] + "z" +
                made[5][6:]]
    for bad in not_made:  # one such id sends the whole flush off the fast path
        ids = [*made[:10], bad, *made[10:20]]
        got = made_id_times(ids)
        assert np.isnan(got[10]) and np.array_equal(got, ref(ids), equal_nan=True), bad
    odd = [made[6][:31] + "é", "é" + made[7][1:]]  # what made_id_time counts, so do we
    assert np.array_equal(made_id_times(odd), ref(odd), equal_nan=True)
    mixed = list(made)
    for _ in range(3000):
        n = rnd.choice([0, 1, 12, 31, 32, 32, 32, 33, 36, 40])
        alphabet = "0123456789abcdef" if rnd.random() < 0.7 else "0123456789abcdefABCxyz-é "
        mixed.append("".join(rnd.choice(alphabet) for _ in range(n)))
    assert np.array_equal(made_id_times(mixed), ref(mixed), equal_nan=True)
    assert len(made_id_times([])) == 0


def test_server_made_ids_are_found_by_time_without_an_index_entry(model, tmp_path: Path,
                                                                 ) -> None:
    from cd4ml.predlog.segments import made_id_time, new_request_id

    made, old_made = new_request_id(), "00000000000a" + "0" * 20  # 1970: far from its ts
    assert made_id_time(made) == pytest.approx(time.time(), abs=5)
    assert made_id_time("client-id") is None and made_id_time(made.upper()) is None
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=5)
    for i, rid in enumerate([made, "client-id", old_made]):
        plog.append(predlog.LogRecord(
            request_id=rid, ts=time.time(), model=NAME, version=1, endpoint="/predict",
            latency_ms=1.0, records=ROWS[i:i + 1], features=model.X[:1],
            feature_names=model.predictor.feature_names, outputs=np.array([float(i)])))
    plog.close()
    with closing(sqlite3.connect(predlog.segments(tmp_path / "log")[0][1])) as con:
        indexed = {r[0] for r in con.execute("SELECT request_id FROM request_ids")}
    assert indexed == {"client-id", old_made}
    for i, rid in enumerate([made, "client-id", old_made]):
        found = predlog.find_request(tmp_path / "log", rid)
        assert found is not None and found["inputs"]["dept"] == [ROWS[i]["dept"]], rid
    assert predlog.find_request(tmp_path / "log", new_request_id()) is None


def test_feedback_for_a_request_id_the_server_made(logged) -> None:
    client, plog = logged
    r = client.post("/predict", json=ROWS[1])
    rid = r.headers["x-request-id"]
    assert r.status_code == 200 and len(rid) == 32
    ok = client.post("/feedback", json=[{"request_id": rid, "actual": 1234.5}])
    assert ok.status_code == 200, ok.text
    df = predlog.predictions(plog.dir)
    assert df.loc[df.request_id == rid, "actual"].tolist() == [1234.5]


def test_an_empty_or_missing_log_answers_every_query(tmp_path: Path) -> None:
    from cd4ml.predlog.segments import new_request_id

    for d in (tmp_path / "missing", tmp_path):
        assert predlog.query(d) == [] and len(predlog.predictions(d)) == 0
        assert predlog.find_request(d, new_request_id()) is None
        assert predlog.find_request(d, "client-id") is None


def test_across_a_swap_each_request_is_logged_with_its_own_versions_features(
        model, tmp_path: Path) -> None:
    """The server keeps the last model's feature table at hand (one identity test per
    request); requests routed to version 1, then 2, then 1 again (a rollback), then 2
    are each logged with their own version's table, never the last one's."""
    import asyncio
    import copy

    from starlette.requests import Request

    from cd4ml.config import ServingConfig
    from cd4ml.serving.app import Runtime
    from cd4ml.serving.routes import CONTEXT_KEY, RequestContext

    v2 = copy.copy(model)
    v2.version, v2.X = 2, np.ascontiguousarray(model.X * 2)  # features that differ
    holder = ModelHolder(model)
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000)
    rt = Runtime(holder, ServingConfig(), plog)

    def score(m, rid: str) -> None:
        if holder.current is not m:
            holder.swap(m)  # the router follows the holder of an app built around it
        scope = {"type": "http", CONTEXT_KEY: RequestContext(rid, time.perf_counter())}
        got = asyncio.run(rt.score(Request(scope), ROWS[:2], "/predict"))
        assert got.model is m

    score(model, "a")
    score(v2, "b")
    score(model, "c")  # rolled back to version 1
    score(v2, "d")
    plog.close()
    df = predlog.predictions(tmp_path / "log")
    feats = [f"feature.{n}" for n in model.predictor.feature_names]
    rows = model.rows_for(ROWS[:2])
    for rid, m in [("a", model), ("b", v2), ("c", model), ("d", v2)]:
        got = df[df.request_id == rid]
        assert got["version"].tolist() == [m.version] * 2, rid
        np.testing.assert_array_equal(got[feats].to_numpy(), m.X[rows])


def _table_record(table, rows, i: int, ts: float) -> predlog.LogRecord:
    rows = np.asarray(rows, dtype=np.int64)
    return predlog.LogRecord(
        request_id=f"t{i}", ts=ts, model=table.model, version=table.version,
        endpoint="/predict", latency_ms=1.0, records=(), features=None,
        feature_names=table.names, outputs=np.arange(len(rows), dtype=float) + i,
        table=table, rows=rows)


def test_features_by_reference_store_each_row_once_per_segment_and_read_back_exactly(
        model, tmp_path: Path) -> None:
    """Records of a feature table hold row numbers; the segment holds each referenced
    row's vector once; readers give back X[rows] and the rows' request fields, also
    across a rotation, for two tables and inline records mixed in one block."""
    now = [1_790_000_000.0]
    t1 = predlog.FeatureTable.of(model)
    other = np.ascontiguousarray(model.X + 1)  # another version, other features
    fields, series, dates = model.row_keys()
    t2 = predlog.FeatureTable(NAME, 99, other, t1.names, fields, series, dates)
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000, rotate_hours=1,
                         clock=lambda: now[0])
    want = model.rows_for(ROWS)
    batches = [(t1, [*want, *want]), (t1, want[:1]), (None, None), (t2, want[1:]),
               (t1, want[::-1])]
    for i, (t, rows) in enumerate(batches):
        if t is None:
            plog.append(predlog.LogRecord(
                request_id=f"t{i}", ts=now[0] + i, model="other", version=1,
                endpoint="/predict", latency_ms=1.0, records=[{"k": 5}],
                features=np.full((1, 2), 7, np.float32), feature_names=["a", "b"],
                outputs=np.array([7.0])))
        else:
            plog.append(_table_record(t, rows, i, now[0] + i))
    assert plog.flush()
    seg1 = predlog.segments(tmp_path / "log")[0][1]
    with closing(sqlite3.connect(seg1)) as con:
        stored = sorted((np.frombuffer(r, "<i4").tolist()
                         for (r,) in con.execute("SELECT rows FROM feature_rows")), key=len)
        assert stored == [sorted(want[1:].tolist()), sorted(want.tolist())]  # t2, t1
        assert con.execute("SELECT count(*) FROM blocks").fetchone()[0] == 1
        assert con.execute("SELECT length(features) FROM blocks").fetchone()[0] == 2 * 4
    # a second flush of known rows adds no vector; a new period's segment has its own
    plog.append(_table_record(t1, want, 10, now[0] + 10))
    assert plog.flush()
    now[0] += 3600
    plog.append(_table_record(t1, want[:2], 11, now[0]))
    assert plog.flush()
    plog.close()
    with closing(sqlite3.connect(seg1)) as con:
        assert con.execute("SELECT count(*) FROM feature_rows").fetchone()[0] == 2
    df = predlog.predictions(tmp_path / "log")
    feats = [f"feature.{n}" for n in t1.names]
    for i, (t, rows) in [*enumerate(batches), (10, (t1, want)), (11, (t1, want[:2]))]:
        got = df[df.request_id == f"t{i}"].sort_values("row")
        if t is None:
            assert got[["feature.a", "feature.b"]].to_numpy().tolist() == [[7, 7]]
            assert got[feats].isna().all().all() and got["k"].tolist() == [5]
            continue
        np.testing.assert_array_equal(got[feats].to_numpy(), t.X[rows])
        assert got["feature.a"].isna().all()
        keys = pd.DataFrame([{**dict(zip(fields[:-1], series[r // len(dates)], strict=True)),
                              "date": dates[r % len(dates)]} for r in rows])
        assert got[["store", "dept", "date"]].astype(object).values.tolist() == \
            keys[["store", "dept", "date"]].astype(object).values.tolist()
    # every protocol-independent view agrees: query, find_request
    q = {r["request_id"]: r for r in predlog.query(tmp_path / "log")}
    assert q["t3"]["inputs"] == {"store": [ROWS[1]["store"], ROWS[2]["store"]],
                                 "dept": [ROWS[1]["dept"], ROWS[2]["dept"]],
                                 "date": [ROWS[1]["date"], ROWS[2]["date"]]}
    assert q["t2"]["inputs"] == {"k": [5]}
    assert predlog.find_request(tmp_path / "log", "t4")["inputs"]["dept"] == [3, 95, 1]
    # the newer segment alone is whole: it stored the rows it references
    seg1.unlink()
    df = predlog.predictions(tmp_path / "log")
    assert df["request_id"].tolist() == ["t11", "t11"]
    np.testing.assert_array_equal(df[feats].to_numpy(), model.X[want[:2]])


def test_a_segment_of_another_log_format_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    from cd4ml.errors import Cd4mlError
    from cd4ml.predlog.segments import LOG_FORMAT, connect_segment

    path = tmp_path / "seg-20261129T00-p1.db"
    with closing(connect_segment(path)) as con:
        con.execute("PRAGMA user_version = 1")
    size = path.stat().st_size
    with pytest.raises(Cd4mlError, match=rf"log format 1, this cd4ml reads and writes format "
                                         rf"{LOG_FORMAT}; move the segments"):
        connect_segment(path)
    with pytest.raises(Cd4mlError, match=rf"{path.name}: log format 1"):
        predlog.predictions(tmp_path)
    # /feedback's lookup says why instead of calling the id unknown
    with pytest.raises(Cd4mlError, match=rf"{path.name}: log format 1"):
        predlog.find_request(tmp_path, "client-id")
    # status lists it, with its format, without reading its blocks
    (seg,) = predlog.status(tmp_path)["segments"]
    assert (seg["segment"], seg["format"]) == (path.name, 1)
    assert path.stat().st_size == size


def test_a_record_that_cannot_be_encoded_is_dropped_and_counted_not_blocking_the_writer(
        model, tmp_path: Path) -> None:
    """The request path only queues records; the writer encodes them. A malformed one
    (rows outside the table, features that are not numbers) is logged, counted as lost,
    and the others of its flush are written."""
    t = predlog.FeatureTable.of(model)
    plog = PredictionLog(tmp_path / "log", flush_interval_ms=60_000)
    good = model.rows_for(ROWS)
    plog.append(_table_record(t, good, 0, 100.0))
    plog.append(_table_record(t, [len(model.X) + 5], 1, 101.0))
    plog.append(predlog.LogRecord(
        request_id="t2", ts=102.0, model="m", version=1, endpoint="/predict", latency_ms=1.0,
        records=[{"k": 1}], features=[["not a number"]], feature_names=["a"],
        outputs=np.array([1.0])))
    plog.append(_table_record(t, good[:1], 3, 103.0))
    assert plog.flush()
    assert plog.dropped == 2 and plog.written == 2
    plog.append(_table_record(t, good[1:], 4, 104.0))  # the writer goes on
    assert plog.flush()
    # rows that do not match the outputs one for one would misalign every later row
    plog.append(_table_record(t, good, 5, 105.0)._replace(outputs=np.array([1.0])))
    plog.append(_table_record(t, good[:1], 6, 106.0))
    assert plog.flush()
    assert plog.dropped == 3
    plog.close()
    assert [r["request_id"] for r in predlog.query(tmp_path / "log")] == ["t0", "t3", "t4",
                                                                           "t6"]
    st = predlog.status(tmp_path / "log")
    assert st["lost_total"] == 3 and st["losses"][0]["reason"] == "dropped while serving"
