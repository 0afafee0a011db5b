"""Sending alert transitions (firing, resolved) to a webhook, with retries and a dead
letter: a transition that cannot be delivered is recorded and counted in the store.

Each transition is one JSON POST shaped as Alertmanager's webhook (``status``, and one
alert with ``labels`` rule/subject/severity, ``annotations`` message/value/threshold,
``startsAt``/``endsAt``), so receivers written for Alertmanager read it. An attempt
succeeds on a 2xx answer. A transport error, a timeout, or an answer of 408, 429 or 5xx
is retried ``retries`` times, after ``backoff_s``, then twice that, and so on; another
4xx is not retried (it will not change). Then the delivery is recorded as ``dead``.
:meth:`WebhookSender.deliver` never raises: the evaluator goes on whatever the receiver
does. Each attempt is bounded by ``timeout_s`` (connecting, sending, and each wait for
the answer), so a receiver that hangs costs at most
``timeout_s * (retries + 1) + backoff_s * (2 ** retries - 1)``.

Sleep, clock and HTTP transport are injectable for tests.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cd4ml.config.monitoring import WebhookConfig
from cd4ml.errors import MissingExtraError
from cd4ml.monitoring.alerts import Transition

if TYPE_CHECKING:
    import httpx

    from cd4ml.store.alert_ops import AlertOps

__all__ = ["WebhookSender", "Delivery", "payload", "RETRIED_STATUS"]

log = logging.getLogger(__name__)

#: answers worth another attempt (besides transport errors and timeouts)
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Alertmanager's "no end yet"
_NO_END = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of sending one transition."""

    alert_id: int | None
    transition: str  #: the state the alert moved to (firing or resolved)
    status: Literal["delivered", "dead"]
    attempts: int
    last_error: str | None  #: why the last failed attempt failed
    elapsed_s: float


def _iso(t: dt.datetime | None) -> str:
    return _NO_END if t is None else \
        t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def payload(t: Transition, *, alert_id: int | None = None) -> dict[str, Any]:
    """The JSON body sent for a transition (Alertmanager webhook format, version 4).

    >>> import datetime as dt
    >>> at = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    >>> t = Transition(rule="skew", subject="sales@3", episode=1, severity="critical",
    ...                metric="skew.share", from_state="inactive", to_state="firing",
    ...                value=0.25, threshold=0.0, resolve=0.0, rows=8, at=at,
    ...                started_at=at, ended_at=None, message="skew.share = 0.25 > 0")
    >>> body = payload(t)
    >>> body["status"], body["alerts"][0]["labels"], body["alerts"][0]["startsAt"]
    ('firing', {'alertname': 'skew', 'rule': 'skew', 'subject': 'sales@3', \
'severity': 'critical', 'metric': 'skew.share'}, '2024-01-01T12:00:00.000Z')
    """
    labels = {"alertname": t.rule, "rule": t.rule, "subject": t.subject,
              "severity": t.severity, "metric": t.metric}
    annotations = {"message": t.message, "value": _num(t.value),
                   "threshold": _num(t.threshold), "resolve": _num(t.resolve)}
    alert = {"status": t.to_state, "labels": labels, "annotations": annotations,
             "startsAt": _iso(t.started_at), "endsAt": _iso(t.ended_at),
             "fingerprint": f"{t.rule}|{t.subject}|{t.episode}"}
    return {"version": "4", "receiver": "cd4ml", "status": t.to_state,
            "groupKey": f"{t.rule}|{t.subject}", "groupLabels": {"alertname": t.rule},
            "commonLabels": labels, "commonAnnotations": annotations, "alerts": [alert],
            "cd4ml": {"alert_id": alert_id, "episode": t.episode, "from": t.from_state,
                      "value": t.value, "threshold": t.threshold, "resolve": t.resolve,
                      "rows": t.rows, "at": _iso(t.at), "detail": t.detail}}


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingExtraError("alert webhooks", "serve", "httpx") from None
    return httpx


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


class WebhookSender:
    """POSTs transitions to ``config.url``; records each outcome in ``store``.

    Parameters
    ----------
    config:
        ``monitoring.alerts.webhook``.
    store:
        Where deliveries and dead letters are recorded (``MetadataStore``); None: not
        recorded (logged only).
    sleep, clock:
        ``time.sleep`` and ``time.monotonic`` unless given (tests pass their own).
    transport:
        An httpx transport (default: real HTTP).
    """

    def __init__(self, config: WebhookConfig, *, store: AlertOps | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.store = store
        self._sleep, self._clock = sleep, clock
        httpx = _httpx()
        self._client = httpx.Client(
            transport=transport, timeout=httpx.Timeout(config.timeout_s),
            headers={"Content-Type": "application/json", "User-Agent": "cd4ml-alerts",
                     **config.headers}, follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deliver(self, transition: Transition, *, alert_id: int | None = None,
                ) -> Delivery | None:
        """Send ``transition``; None when it is not sent (into pending or inactive).

        Never raises: failures end in a ``dead`` delivery, recorded in the store with
        the last error (``MetadataStore.count_dead_letters`` counts them).
        """
        if not transition.notified:
            return None
        start = self._clock()
        try:
            status, attempts, error = self._attempts(payload(transition, alert_id=alert_id))
        except Exception as exc:  # e.g. a body that cannot be encoded: still a dead letter
            status, attempts, error = "dead", 0, _short(exc)
        done = Delivery(alert_id=alert_id, transition=transition.to_state, status=status,
                        attempts=attempts, last_error=error,
                        elapsed_s=self._clock() - start)
        what = f"alert {transition.rule} on {transition.subject} ({transition.to_state})"
        if status == "dead":
            log.warning("webhook: %s not delivered after %d attempts: %s", what, attempts,
                        error)
        self._record(done, what)
        return done

    def _attempts(self, body: dict[str, Any]) -> tuple[Literal["delivered", "dead"], int,
                                                         str | None]:
        httpx = _httpx()
        error: str | None = None
        for attempt in range(1, self.config.retries + 2):
            if attempt > 1:
                self._sleep(self.config.backoff_s * 2 ** (attempt - 2))
            try:
                answer = self._client.post(self.config.url, json=body)
            except httpx.TimeoutException as exc:
                error = f"timed out after {self.config.timeout_s:g}s ({type(exc).__name__})"
                continue
            except httpx.HTTPError as exc:
                error = _short(exc)
                continue
            if 200 <= answer.status_code < 300:
                return "delivered", attempt, error
            error = f"HTTP {answer.status_code}: {answer.text[:200].strip()}"
            if answer.status_code not in RETRIED_STATUS:
                return "dead", attempt, error
        return "dead", self.config.retries + 1, error

    def _record(self, done: Delivery, what: str) -> None:
        if self.store is None or done.alert_id is None:
            return
        try:
            self.store.record_delivery(done.alert_id, done.transition,
                                       attempts=done.attempts, status=done.status,
                                       last_error=done.last_error)
        except Exception as exc:
            log.error("webhook: the delivery of %s could not be recorded: %s", what,
                      _short(exc))
