"""Operations around the protocols, on real `cd4ml serve` processes: request ids,
Prometheus metrics (one worker and several), JSON logs, concurrency limit, timeout,
readiness while loading and draining, graceful shutdown, crash losses of the log."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import start_server, stop_server
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cd4ml.config import ServingConfig
from cd4ml.registry.loader import load_model
from cd4ml import predlog
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.serving.router import DeploymentWatcher, Router

NAME = "walmart-weekly-sales"
ROW = {"store": 1, "dept": 1, "date": "2012-11-02"}


def _metrics(url: str) -> dict[tuple[str, frozenset], float]:
    """The server's metrics (a probe: answered even while every slot is taken)."""
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    text = r.text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _sum(m: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in m.items() if n == name and want <= lab)


def _log_lines(proc) -> list[dict]:
    lines = []
    for line in Path(proc.log_path).read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _log_dir(proj: Path) -> Path:
    return proj / ".cd4ml" / "predictions"


@pytest.fixture(scope="module")
def one(trained_project: Path):
    proc, url = start_server(trained_project)
    yield proc, url
    stop_server(proc)


def test_request_ids_metrics_and_json_logs(one) -> None:
    proc, url = one
    with httpx.Client(base_url=url, timeout=10) as c:
        for path, kw in [("/predict", {"json": ROW}), ("/predict", {"json": {"store": 1}}),
                         ("/health", None), ("/nope", None), ("/metrics", None),
                         (f"/v2/models/{NAME}/infer", {"json": {"inputs": []}}),
                         ("/invocations", {"json": {"dataframe_records": [ROW]}})]:
            rid = f"t-{abs(hash(path + str(kw))) % 10**8}"
            res = c.post(path, headers={"x-request-id": rid}, **kw) if kw is not None \
                else c.get(path, headers={"x-request-id": rid})
            assert res.headers["x-request-id"] == rid, path  # honoured and echoed everywhere
        res = c.post("/predict", json=ROW, headers={"x-request-id": "not ok\t!"})
        assert len(res.headers["x-request-id"]) == 32 and res.json()["request_id"] == \
            res.headers["x-request-id"]
        time.sleep(0.002)  # made ids are time-ordered (the log's index grows at its end)
        later = c.post("/predict", json=ROW).headers["x-request-id"]
        assert later > res.headers["x-request-id"]
        body = c.post("/predict", json=ROW, headers={"x-request-id": "abc-1"}).json()
        assert body["request_id"] == "abc-1" and body["model"] == NAME
    m = _metrics(url)
    assert _sum(m, "cd4ml_http_requests_total", endpoint="/predict", status="200") == 4
    assert _sum(m, "cd4ml_http_requests_total", endpoint="/predict", status="422") == 1
    assert _sum(m, "cd4ml_http_errors_total", endpoint="/predict", type="RequestError") == 1
    assert _sum(m, "cd4ml_http_errors_total", endpoint="other", type="http_404") == 1
    assert _sum(m, "cd4ml_predictions_total", model=NAME) == 5  # rows, all protocols
    assert _sum(m, "cd4ml_http_request_duration_seconds_count", endpoint="/predict") == 5
    assert ("cd4ml_prediction_log_queue_depth", frozenset()) in m
    assert _sum(m, "cd4ml_model_loaded", model=NAME) == 1
    time.sleep(0.3)
    access = [x for x in _log_lines(proc) if x.get("logger") == "cd4ml.access"]
    mine = [x for x in access if x.get("request_id") == "abc-1"]
    assert mine and mine[0]["status"] == 200 and mine[0]["path"] == "/predict"
    assert mine[0]["latency_ms"] > 0 and mine[0]["model_version"] == 1


def _partial_request(url: str, path: str = "/predict", declared: int = 100) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {declared}\r\n\r\n{{\"store\"".encode())
    return s


def _read_response(s: socket.socket) -> str:
    """Headers and body of one HTTP/1.1 response (body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_concurrency_limit_timeout_and_big_bodies(trained_project: Path) -> None:
    proc, url = start_server(trained_project, "--set", "serving.max_concurrency=1",
                             "--set", "serving.request_timeout_s=1.5")
    try:
        before = _metrics(url)
        stalled = _partial_request(url)  # holds the only slot, waiting for its body
        time.sleep(0.3)
        busy = httpx.post(f"{url}/predict", json=ROW, timeout=10)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "serving.max_concurrency" in busy.json()["detail"]
        # the probes take no slot: a busy worker is not read as a dead one
        for probe in ("/live", "/ready", "/health", "/ping", "/v2/health/live",
                      "/v2/health/ready"):
            assert httpx.get(f"{url}{probe}", timeout=10).status_code == 200, probe
        assert _sum(_metrics(url), "cd4ml_http_requests_in_flight") == 1  # the stalled one
        reply = _read_response(stalled)  # the stalled one times out
        assert reply.startswith("HTTP/1.1 504") and "serving.request_timeout_s" in reply
        stalled.close()
        assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 200
        # a body of 100 MB is refused from its Content-Length, before it is read
        big = _partial_request(url, declared=100_000_000)
        reply = _read_response(big)
        big.close()
        assert reply.startswith("HTTP/1.1 413") and "serving.max_body_bytes" in reply
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 200  # still up
        m = _metrics(url)
        for kind in ("overloaded", "timeout", "body_too_large"):
            assert _sum(m, "cd4ml_http_errors_total", type=kind) - \
                _sum(before, "cd4ml_http_errors_total", type=kind) == 1, kind
    finally:
        stop_server(proc)


def test_a_million_rows_nan_and_infinity_are_refused(trained_project: Path) -> None:
    model = load_model(f"{NAME}@production", project_dir=trained_project)
    client = TestClient(create_app(ModelHolder(model), max_body_bytes=200_000_000))
    rows = "[" + ",".join(['{"store":1,"dept":1,"date":"2012-11-02"}'] * 1_000_000) + "]"
    res = client.post("/predict", content=rows, headers={"content-type": "application/json"})
    assert res.status_code == 413 and "1000000 rows" in res.json()["detail"]
    # NaN and Infinity are not JSON: the body is refused before any field is looked at
    for bad, field, text in [
            ('{"store": NaN, "dept": 1, "date": "2012-11-02"}', None, "NaN and Infinity"),
            ('{"store": 1, "dept": Infinity, "date": "2012-11-02"}', None, "NaN and Infinity"),
            ('{"store": "one", "dept": 1, "date": "2012-11-02"}', "store", "a number")]:
        res = client.post("/predict", content=bad, headers={"content-type": "application/json"})
        assert res.status_code == 422, bad
        assert res.json()["errors"][0]["field"] == field and text in res.json()["detail"]


def test_readiness_is_false_while_the_model_loads(trained_project: Path) -> None:
    from cd4ml.config import load_config
    from cd4ml.registry.loader import load_version
    from cd4ml.store import open_stores

    cfg, _ = load_config(trained_project)
    gate = threading.Event()

    def resolve() -> tuple:
        from cd4ml.rollout.manage import effective_deployment

        with open_stores(cfg.store, trained_project) as st:
            state = effective_deployment(st, cfg)
            return state, {a.version: st.metadata.resolve(NAME, a.version) for a in state.arms}

    def load(row: dict):
        gate.wait(30)  # the real load, held back until the test has looked
        with open_stores(cfg.store, trained_project) as st:
            return load_version(st.metadata, st.artifacts, NAME, row["version"])

    holder = ModelHolder()
    router = Router(holder)
    watcher = DeploymentWatcher(router, resolve=resolve, load=load, interval_s=0.1)
    with TestClient(create_app(holder, watcher=watcher, router=router,
                               settings=ServingConfig())) as c:
        for path in ("/ready", "/health", "/ping", "/v2/health/ready"):
            assert c.get(path).status_code == 503, path
        assert "loading" in c.get("/ready").json()["reason"]
        res = c.post("/predict", json=ROW)
        assert res.status_code == 503 and res.headers["retry-after"] == "1"
        assert c.get("/live").status_code == 200
        gate.set()
        deadline = time.monotonic() + 30
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/ready").json()["version"] == 1
        assert c.post("/predict", json=ROW).status_code == 200


def test_sigterm_drains_then_flushes_the_log(trained_project: Path) -> None:
    before = len(predlog.query(_log_dir(trained_project)))
    proc, url = start_server(trained_project, "--set", "serving.drain_s=3",
                             "--set", "serving.log.flush_interval_ms=30000")
    for _ in range(5):
        assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 200
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    res = httpx.get(f"{url}/ready", timeout=5)
    assert res.status_code == 503 and "draining" in res.json()["reason"]
    assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 200  # still served
    proc.wait(timeout=30)
    # the 30 s flush interval never came: the six records were flushed at shutdown
    assert len(predlog.query(_log_dir(trained_project))) == before + 6
    assert predlog.status(_log_dir(trained_project))["lost_total"] == 0
    events = [x.get("event") for x in _log_lines(proc)]
    assert "draining" in events and "prediction_log_closed" in events


def test_kill_9_loses_only_the_unflushed_tail_and_the_next_server_reports_it(
        trained_project: Path) -> None:
    d = _log_dir(trained_project)
    lost_before = predlog.status(d)["lost_total"]
    proc, url = start_server(trained_project, "--set", "serving.log.flush_interval_ms=60000")
    for _ in range(4):
        assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 200
    stop_server(proc, signal.SIGKILL)
    proc2, url2 = start_server(trained_project)
    try:
        health = httpx.get(f"{url2}/health", timeout=10).json()
        assert health["prediction_log"]["recovered_losses"] == 4
        assert _sum(_metrics(url2), "cd4ml_prediction_log_records_lost_total") == 4
        assert predlog.status(d)["lost_total"] == lost_before + 4
    finally:
        stop_server(proc2)


def test_two_workers_answer_and_share_metrics(trained_project: Path) -> None:
    d = _log_dir(trained_project)
    before = len(predlog.query(d))
    proc, url = start_server(trained_project, "--workers", "2")
    try:
        for i in range(40):
            with httpx.Client(timeout=10) as c:  # a new connection each time
                assert c.post(f"{url}/predict", json=ROW).status_code == 200
        m = _metrics(url)
        assert _sum(m, "cd4ml_http_requests_total", endpoint="/predict", status="200") == 40
        assert _sum(m, "cd4ml_predictions_total") == 40
        started = {x["pid"] for x in _log_lines(proc)
                   if "Started server process" in x.get("message", "")}
        assert len(started) == 2
    finally:
        stop_server(proc)
    assert len(predlog.query(d)) == before + 40


def test_json_lines_carry_the_fields_extras_and_tracebacks() -> None:
    import io
    import logging

    from cd4ml.serving.ops import JsonLines

    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(JsonLines())
    lg = logging.getLogger("cd4ml.test.jsonlines")
    lg.addHandler(h)
    lg.propagate = False
    try:
        lg.warning("%s took %d ms", "GET /x", 3, extra={"request_id": "r1", "path": Path("/p"),
                                                       "status": 200, "missing": None})
        try:
            {}["k"]
        except KeyError:
            lg.exception("failed", extra={"request_id": "r2"})
    finally:
        lg.removeHandler(h)
    first, second = (json.loads(x) for x in buf.getvalue().splitlines())
    assert first["message"] == "GET /x took 3 ms" and first["level"] == "WARNING"
    assert first["logger"] == "cd4ml.test.jsonlines" and first["pid"] == os.getpid()
    assert first["request_id"] == "r1" and first["path"] == "/p"  # not JSON: as text
    assert first["status"] == 200 and first["missing"] is None
    assert len(first["time"]) == 24 and first["time"][10] == "T"
    assert "args" not in first and "msg" not in first and "exc_info" not in first
    assert second["request_id"] == "r2" and "KeyError: 'k'" in second["exc_info"]
