"""Alert webhooks against a real HTTP receiver on loopback: delivered, retried with
backoff, dead letters when the receiver is down or hangs, and never an exception."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cd4ml.config.monitoring import AlertRuleConfig, WebhookConfig
from cd4ml.monitoring.alerts import AlertState, Observation, Transition, step
from cd4ml.monitoring.webhook import WebhookSender, payload
from cd4ml.store import MetadataStore

T0 = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
RULE = AlertRuleConfig.model_validate({"name": "skew", "metric": "skew.share",
                                       "threshold": 0, "min_rows": 1,
                                       "severity": "critical"})


class Receiver:
    """An HTTP server on a free loopback port; ``answers`` is the status of each POST in
    turn (then 200); ``hang`` makes every request wait until the test ends."""

    def __init__(self, answers: list[int] | None = None, hang: bool = False) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.answers = list(answers or [])
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                if hang:
                    receiver.release.wait(30)
                    return
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status >= 300 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(**kw: Any) -> Receiver:
        started.append(Receiver(**kw))
        return started[-1]

    yield start
    for r in started:
        r.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    with MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}") as db:
        yield db


class Sleeps:
    """An injected sleep: records what it was asked, sleeps not at all."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, s: float) -> None:
        self.asked.append(s)


def fired(store: MetadataStore, value: float = 0.25) -> tuple[Transition, int]:
    """A firing transition written to the store, and its alert id."""
    state, change = step(RULE, None, Observation(rule="skew", subject="sales@3", value=value,
                                                 rows=8, at=T0, detail={"cols": ["x"]}))
    assert change is not None
    written = store.write_alert_step(state, change, previous=None)
    assert written.alert_id is not None
    return change, written.alert_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_firing_alert_is_delivered(receiver_factory: Any, store: MetadataStore) -> None:
    rx = receiver_factory()
    change, alert_id = fired(store)
    cfg = WebhookConfig(url=rx.url, headers={"Authorization": "Bearer t0k"})
    with WebhookSender(cfg, store=store, sleep=Sleeps()) as sender:
        done = sender.deliver(change, alert_id=alert_id)
    assert done is not None and (done.status, done.attempts, done.last_error) == \
        ("delivered", 1, None)
    (body,) = rx.bodies
    assert body == json.loads(json.dumps(payload(change, alert_id=alert_id)))
    alert = body["alerts"][0]
    assert body["status"] == alert["status"] == "firing"
    assert alert["labels"] == {"alertname": "skew", "rule": "skew", "subject": "sales@3",
                               "severity": "critical", "metric": "skew.share"}
    assert alert["annotations"]["value"] == "0.25" and alert["annotations"]["threshold"] == "0.0"
    assert alert["annotations"]["message"].startswith("skew.share = 0.25 > 0")
    assert alert["startsAt"] == "2024-03-01T12:00:00.000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert body["cd4ml"]["detail"] == {"cols": ["x"]} and body["cd4ml"]["alert_id"] == alert_id
    assert rx.headers[0]["Authorization"] == "Bearer t0k"
    assert rx.headers[0]["Content-Type"] == "application/json"
    assert [(d["status"], d["attempts"]) for d in store.list_deliveries()] == [("delivered", 1)]
    assert store.count_dead_letters() == 0


def test_resolved_carries_its_end_and_pending_is_not_sent(receiver_factory: Any,
                                                         store: MetadataStore) -> None:
    rx = receiver_factory()
    _, alert_id = fired(store)
    state = AlertState.from_row(store.alert_states("sales@3")["skew"])
    resolved, change = step(RULE, state, Observation(rule="skew", subject="sales@3",
                                                     value=0.0, rows=8,
                                                     at=T0 + dt.timedelta(hours=1)))
    assert change is not None
    slow = AlertRuleConfig.model_validate({**RULE.model_dump(by_alias=True), "for": "1h"})
    _, pending = step(slow, None, Observation(rule="skew", subject="x@1", value=1, rows=8,
                                              at=T0))
    with WebhookSender(WebhookConfig(url=rx.url), store=store) as sender:
        assert pending is not None and sender.deliver(pending, alert_id=alert_id) is None
        assert sender.deliver(change, alert_id=alert_id).status == "delivered"  # type: ignore[union-attr]
    (body,) = rx.bodies
    alert = body["alerts"][0]
    assert body["status"] == "resolved" and alert["startsAt"] == "2024-03-01T12:00:00.000Z"
    assert alert["endsAt"] == "2024-03-01T13:00:00.000Z"


def test_retries_back_off_then_deliver(receiver_factory: Any, store: MetadataStore) -> None:
    rx = receiver_factory(answers=[503, 500])
    change, alert_id = fired(store)
    sleeps = Sleeps()
    cfg = WebhookConfig(url=rx.url, retries=3, backoff_s=0.5)
    with WebhookSender(cfg, store=store, sleep=sleeps) as sender:
        done = sender.deliver(change, alert_id=alert_id)
    assert done is not None and (done.status, done.attempts) == ("delivered", 3)
    assert done.last_error == "HTTP 500: no"  # the last failure before the success
    assert sleeps.asked == [0.5, 1.0] and len(rx.bodies) == 3
    assert store.count_dead_letters() == 0


def test_receiver_down_retries_then_one_dead_letter(store: MetadataStore) -> None:
    change, alert_id = fired(store)
    sleeps = Sleeps()
    cfg = WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook", retries=3, backoff_s=1)
    with WebhookSender(cfg, store=store, sleep=sleeps) as sender:
        done = sender.deliver(change, alert_id=alert_id)
    assert done is not None and (done.status, done.attempts) == ("dead", 4)
    assert done.last_error is not None and done.last_error.startswith("ConnectError")
    assert sleeps.asked == [1, 2, 4]
    assert store.count_dead_letters() == 1
    (dead,) = store.list_deliveries(status="dead")
    assert (dead["alert_id"], dead["transition"], dead["attempts"]) == (alert_id, "firing", 4)


def test_a_hanging_receiver_times_out_each_attempt(receiver_factory: Any,
                                                  store: MetadataStore) -> None:
    rx = receiver_factory(hang=True)
    change, alert_id = fired(store)
    sleeps = Sleeps()
    cfg = WebhookConfig(url=rx.url, timeout_s=0.3, retries=2, backoff_s=0.5)
    start = time.monotonic()
    with WebhookSender(cfg, store=store, sleep=sleeps) as sender:
        done = sender.deliver(change, alert_id=alert_id)
    elapsed = time.monotonic() - start
    assert done is not None and (done.status, done.attempts) == ("dead", 3)
    assert done.last_error is not None and done.last_error.startswith("timed out after 0.3s")
    assert len(rx.bodies) == 3 and sleeps.asked == [0.5, 1.0]
    assert 0.3 * 3 * 0.9 <= elapsed < cfg.timeout_s * (cfg.retries + 1) + cfg.backoff_s
    assert store.count_dead_letters() == 1


def test_a_client_error_is_not_retried(receiver_factory: Any, store: MetadataStore) -> None:
    rx = receiver_factory(answers=[400])
    change, alert_id = fired(store)
    sleeps = Sleeps()
    with WebhookSender(WebhookConfig(url=rx.url), store=store, sleep=sleeps) as sender:
        done = sender.deliver(change, alert_id=alert_id)
    assert done is not None and (done.status, done.attempts, done.last_error) == \
        ("dead", 1, "HTTP 400: no")
    assert sleeps.asked == [] and store.count_dead_letters() == 1


def test_deliver_never_raises(receiver_factory: Any, store: MetadataStore,
                              caplog: pytest.LogCaptureFixture) -> None:
    rx = receiver_factory()
    change, alert_id = fired(store)

    class Broken:
        def record_delivery(self, *a: Any, **kw: Any) -> int:
            raise RuntimeError("database is gone")

    with WebhookSender(WebhookConfig(url=rx.url), store=Broken()) as sender:  # type: ignore[arg-type]
        assert sender.deliver(change, alert_id=alert_id).status == "delivered"  # type: ignore[union-attr]
    assert "could not be recorded: RuntimeError: database is gone" in caplog.text
    odd = Transition(**{**{f: getattr(change, f) for f in Transition.__dataclass_fields__},
                        "detail": {"x": object()}})
    with WebhookSender(WebhookConfig(url=rx.url), store=store) as sender:
        done = sender.deliver(odd, alert_id=alert_id)
    assert done is not None and (done.status, done.attempts) == ("dead", 0)
    assert done.last_error is not None and done.last_error.startswith("TypeError")
    assert store.count_dead_letters() == 1 and len(rx.bodies) == 1
