"""``/feedback`` against a long log: 10,000 unknown request ids and 60 segments (built by
the real writer with a fake clock) are answered after one visit of each segment, and a
deadline stops a lookup that runs too long."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cd4ml.config import ServingConfig
from cd4ml.errors import DeadlineError, http_status
from cd4ml.registry.loader import load_model
from cd4ml import predlog
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.predlog import PredictionLog

NAME = "walmart-weekly-sales"
ROW = {"store": 1, "dept": 1, "date": "2012-11-02"}
HOURS = 60


def _made(t: float, k: int) -> str:
    """An id shaped like the server's, made at time t (ms, 12 hex digits, then random)."""
    return f"{int(t * 1000):012x}{k:020x}"


@pytest.fixture(scope="module")
def model(trained_project: Path):
    return load_model(f"{NAME}@production", project_dir=trained_project)


@pytest.fixture(scope="module")
def long_log(model, tmp_path_factory: pytest.TempPathFactory):
    """60 hourly segments, each with 40 records of client ids and 40 of server-made
    ids, written by the real writer as its fake clock moves through 60 hours."""
    d = tmp_path_factory.mktemp("long") / "log"
    # at the start of an hour (UTC), as segments are: each hour's records (60 to 850 s
    # into it) then fall in the period of the clock that flushes them, as on a real
    # server, whose flush comes after its records; from an arbitrary t0 a record could
    # lie in the next period while its segment is this one's, where no lookup by time
    # looks (the test failed about one run in eight that way)
    t0 = (time.time() // 3600 - HOURS - 1) * 3600
    now = [t0]
    table = predlog.FeatureTable.of(model)
    rows = model.rows_for([ROW])
    with PredictionLog(d, flush_interval_ms=60_000, rotate_hours=1,
                       clock=lambda: now[0]) as plog:
        for h in range(HOURS):
            now[0] = t0 + h * 3600 + 60
            for k in range(80):
                ts = now[0] + k * 10
                rid = f"client-{h}-{k}" if k % 2 else _made(ts - 0.005, h * 1000 + k)
                plog.append(predlog.LogRecord(
                    request_id=rid, ts=ts, model=NAME, version=model.version,
                    endpoint="/predict", latency_ms=1.0, records=(), features=None,
                    feature_names=table.names, outputs=np.array([float(k)]),
                    table=table, rows=rows))
            assert plog.flush()
        # labels for the last hour's client ids, an hour after their predictions
        now[0] = t0 + (HOURS - 1) * 3600 + 1000
        plog.add_feedback([{"request_id": f"client-{HOURS - 1}-{k}", "row": 0,
                            "actual": float(k)} for k in range(1, 80, 2)])
    assert len(predlog.segments(d)) == HOURS
    return d, t0


def test_a_late_window_asks_only_the_segments_from_its_start_for_its_feedback(
        long_log) -> None:
    """Feedback by id comes after its prediction, so a window of the last hour asks the
    segments from that hour on (and one hour before, for clocks apart), not all 60; what
    it joins is what asking every segment joins."""
    from cd4ml.predlog.feedback import read_feedback

    d, t0 = long_log
    since = t0 + (HOURS - 1) * 3600
    read = predlog.FeedbackRead()
    df = predlog.batches(d, since=since, feedback_read=read).read_all().to_pandas()
    assert read.segments <= 2 < HOURS
    labelled = df[df["actual"].notna()]
    assert len(labelled) == 40
    assert (labelled["actual"] == labelled["request_id"].str.rsplit("-", n=1).str[1]
            .astype(float)).all()
    ids = set(df["request_id"])
    every = read_feedback(d, ids, {}, predlog.FeedbackRead())
    late = read_feedback(d, ids, {}, predlog.FeedbackRead(), since=since)
    assert every.equals(late) and len(every) == 40


def test_10000_unknown_ids_against_60_segments_take_one_visit_per_segment(
        model, long_log) -> None:
    d, t0 = long_log
    # half client-style, half server-made ids whose times fall inside the logged hours
    unknown = [f"nope-{i}" for i in range(5000)] + [
        _made(t0 + 60 + (i % HOURS) * 3600 + (i * 7) % 800, 10**9 + i) for i in range(5000)]
    start = time.process_time()
    found = predlog.find_requests(d, unknown)
    cpu = time.process_time() - start
    assert found.found == {} and found.damaged == []
    assert found.connections == HOURS  # each segment opened once, not once per id
    assert found.queries <= 3 * HOURS  # by index, block ranges, candidates' meta
    print(f"find_requests: 10,000 unknown ids, {HOURS} segments: {cpu * 1000:.0f} ms CPU, "
          f"{found.queries} queries")
    plog = PredictionLog(d, flush_interval_ms=50)
    try:
        client = TestClient(create_app(ModelHolder(model), plog=plog))
        body = [{"request_id": rid, "actual": 1.0} for rid in unknown]
        t = time.perf_counter()
        res = client.post("/feedback", json=body)
        print(f"POST /feedback of 10,000 unknown ids: {time.perf_counter() - t:.3f} s")
        assert res.status_code == 404
        detail = res.json()["detail"]
        assert "'nope-0', 'nope-1', 'nope-2' are not in the prediction log (and 9997 more)" \
            in detail
    finally:
        plog.close()


def test_known_ids_of_both_kinds_are_found_among_60_segments(model, long_log) -> None:
    d, t0 = long_log
    h = 17
    made = _made(t0 + h * 3600 + 60 + 40 * 10 - 0.005, h * 1000 + 40)
    ids = [f"client-{h}-41", made, f"client-{HOURS - 1}-1", "nope"]
    got = predlog.find_requests(d, ids)
    assert set(got.found) == set(ids[:3])
    assert got.found[made]["inputs"] == {"store": [1], "dept": [1], "date": ["2012-11-02"]}
    assert got.connections <= HOURS
    plog = PredictionLog(d, flush_interval_ms=50)
    try:
        client = TestClient(create_app(ModelHolder(model), plog=plog))
        res = client.post("/feedback", json=[{"request_id": i, "actual": 2.0}
                                             for i in ids[:3]])
        assert res.status_code == 200 and res.json() == {"accepted": 3}
    finally:
        plog.close()


def test_a_lookup_past_its_deadline_stops_with_504(model, long_log) -> None:
    d, _ = long_log
    with pytest.raises(DeadlineError, match="serving.request_timeout_s") as exc:
        predlog.find_requests(d, ["nope"], deadline=time.monotonic() - 1)
    assert http_status(exc.value) == 504
    from cd4ml.serving.app import Runtime
    from cd4ml.serving.feedback import check_feedback

    plog = PredictionLog(d, flush_interval_ms=50)
    try:
        rt = Runtime(ModelHolder(model), ServingConfig(), plog)
        with pytest.raises(DeadlineError):
            check_feedback(rt, [{"request_id": "nope", "actual": 1.0}],
                           deadline=time.monotonic() - 1)
        client = TestClient(create_app(ModelHolder(model), plog=plog,
                                       settings=ServingConfig(request_timeout_s=1e-4)))
        res = client.post("/feedback", json=[{"request_id": f"n{i}", "actual": 1.0}
                                             for i in range(2000)])
        assert res.status_code == 504
    finally:
        plog.close()
