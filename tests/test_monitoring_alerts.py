"""Alert rules: the state machine at every boundary, and their config (defaults, refusals)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cd4ml.config import parse_yaml, validate_config
from cd4ml.config.monitoring import (ALERT_METRICS, QUALITY_METRICS, AlertRuleConfig,
                                     alert_metric_names, parse_duration)
from cd4ml.errors import ConfigError
from cd4ml.monitoring.alerts import AlertState, Observation, Transition, step

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def rule(**kw: Any) -> AlertRuleConfig:
    spec = {"name": "r", "metric": "drift.share", "threshold": 0.5, "resolve": 0.3,
            "min_rows": 10, **kw}
    return AlertRuleConfig.model_validate(spec)


def obs(value: float | None, *, s: float = 0, rows: int = 100, r: str = "r",
        subject: str = "m@1") -> Observation:
    return Observation(rule=r, subject=subject, value=value, rows=rows,
                       at=T0 + dt.timedelta(seconds=s), detail={"s": s})


def run(rl: AlertRuleConfig, points: list[tuple[float, float | None]], *, rows: int = 100,
        ) -> tuple[AlertState, list[Transition | None]]:
    """Step through (seconds, value) points; the last state and every transition."""
    state: AlertState | None = None
    changes: list[Transition | None] = []
    for s, v in points:
        state, change = step(rl, state, obs(v, s=s, rows=rows))
        changes.append(change)
    assert state is not None
    return state, changes


def moves(changes: list[Transition | None]) -> list[str | None]:
    return [c and f"{c.from_state}>{c.to_state}" for c in changes]


# -- the condition and `for` -----------------------------------------------------------

def test_value_at_the_threshold_does_not_start_an_alert() -> None:
    state, changes = run(rule(), [(0, 0.5)])
    assert state.state == "inactive" and changes == [None] and state.episode == 1
    assert state.message.startswith("drift.share = 0.5 <= 0.5")


def test_just_above_the_threshold_with_no_for_fires_at_once() -> None:
    state, changes = run(rule(), [(0, 0.5000001)])
    assert state.state == "firing" and moves(changes) == ["inactive>firing"]
    assert state.pending_since == state.fired_at == T0
    assert changes[0] is not None and changes[0].started_at == T0 and changes[0].notified


def test_pending_fires_when_the_condition_held_exactly_for() -> None:
    rl = rule(**{"for": "10m"})
    state, changes = run(rl, [(0, 0.6), (599.999, 0.6), (600, 0.6)])
    assert moves(changes) == ["inactive>pending", None, "pending>firing"]
    assert state.pending_since == T0  # kept from the first true observation
    assert state.fired_at == T0 + dt.timedelta(seconds=600)
    assert not changes[0].notified  # type: ignore[union-attr]


def test_pending_goes_back_to_inactive_when_the_condition_stops_before_for() -> None:
    rl = rule(**{"for": "10m"})
    state, changes = run(rl, [(0, 0.6), (300, 0.5), (400, 0.6), (999, 0.6), (1000, 0.6)])
    assert moves(changes) == ["inactive>pending", "pending>inactive", "inactive>pending",
                              None, "pending>firing"]
    assert state.pending_since == T0 + dt.timedelta(seconds=400)  # the clock restarted
    assert state.episode == 1  # an aborted pending is no episode of its own


# -- hysteresis ------------------------------------------------------------------------

def test_between_resolve_and_threshold_a_firing_alert_keeps_firing() -> None:
    state, changes = run(rule(), [(0, 0.9), (60, 0.5), (120, 0.3000001), (180, 0.4)])
    assert state.state == "firing" and moves(changes) == ["inactive>firing", None, None, None]
    assert "still firing" in state.message and state.fired_at == T0


def test_firing_resolves_at_the_resolve_threshold() -> None:
    state, changes = run(rule(), [(0, 0.9), (60, 0.3)])
    assert state.state == "resolved" and moves(changes) == ["inactive>firing",
                                                            "firing>resolved"]
    assert state.resolved_at == T0 + dt.timedelta(seconds=60)
    end = changes[1]
    assert end is not None and end.ended_at == state.resolved_at and end.started_at == T0


def test_between_the_thresholds_a_resolved_alert_starts_no_new_episode() -> None:
    state, changes = run(rule(), [(0, 0.9), (60, 0.1), (120, 0.45), (180, 0.5)])
    assert state.state == "resolved" and state.episode == 1
    assert moves(changes)[2:] == [None, None]


def test_a_resolved_alert_that_fires_again_is_a_new_episode() -> None:
    rl = rule(**{"for": "1m"})
    state, changes = run(rl, [(0, 0.9), (60, 0.9), (120, 0.1), (180, 0.8), (240, 0.8)])
    assert moves(changes) == ["inactive>pending", "pending>firing", "firing>resolved",
                              "resolved>pending", "pending>firing"]
    assert state.episode == 2 and state.resolved_at is None
    assert state.pending_since == T0 + dt.timedelta(seconds=180)
    assert [c.episode for c in changes if c] == [1, 1, 1, 2, 2]


def test_below_direction_mirrors_above() -> None:
    rl = rule(metric="quality.roc_auc", direction="below", threshold=0.8, resolve=0.85)
    state, changes = run(rl, [(0, 0.8), (60, 0.79), (120, 0.84), (180, 0.85)])
    assert moves(changes) == [None, "inactive>firing", None, "firing>resolved"]
    assert state.message.startswith("quality.roc_auc = 0.85 >= 0.85")


def test_resolve_equal_to_threshold_has_no_band() -> None:
    rl = rule(metric="skew.share", threshold=0.0, resolve=0.0, min_rows=1)
    state, changes = run(rl, [(0, 0.01), (60, 0.0), (120, 0.0)], rows=1)
    assert moves(changes) == ["inactive>firing", "firing>resolved", None]


# -- insufficient data -----------------------------------------------------------------

@pytest.mark.parametrize("value,rows", [(None, 100), (float("nan"), 100), (0.0, 9),
                                        (0.0, 0), (float("inf"), 100)])
def test_insufficient_data_never_changes_the_state(value: float | None, rows: int) -> None:
    rl = rule()
    firing, _ = step(rl, None, obs(0.9))
    state, change = step(rl, firing, obs(value, s=60, rows=rows))
    assert change is None and state.state == "firing" and state.insufficient
    assert state.fired_at == firing.fired_at and state.rows == rows
    assert state.message.startswith("insufficient data") and "still firing" in state.message
    assert state.updated_at == T0 + dt.timedelta(seconds=60)
    assert state.detail == {"s": 60}


def test_insufficient_data_does_not_start_or_stop_pending() -> None:
    rl = rule(**{"for": "10m"})
    state, changes = run(rl, [(0, 0.9), (300, None), (600, 0.9)])
    assert moves(changes) == ["inactive>pending", None, "pending>firing"]
    fresh, change = step(rl, None, obs(0.99, rows=9))
    assert fresh.state == "inactive" and change is None and fresh.insufficient
    assert "9 rows < min_rows 10" in fresh.message


def test_min_rows_exactly_is_enough() -> None:
    state, change = step(rule(), None, obs(0.9, rows=10))
    assert state.state == "firing" and not state.insufficient and change is not None


def test_an_edited_rule_applies_at_the_next_observation() -> None:
    firing, _ = step(rule(), None, obs(0.6))
    state, change = step(rule(threshold=0.7, resolve=0.65, severity="critical"), firing,
                         obs(0.6, s=60))
    assert state.state == "resolved" and change is not None
    assert (state.threshold, state.resolve, state.severity) == (0.7, 0.65, "critical")


def test_observations_that_do_not_belong_are_refused() -> None:
    rl = rule()
    with pytest.raises(ValueError, match="rule 'other' given to rule 'r'"):
        step(rl, None, obs(0.1, r="other"))
    state, _ = step(rl, None, obs(0.1))
    with pytest.raises(ValueError, match="'m@1' given for 'r' on 'm@2'"):
        step(rl, state, obs(0.1, subject="m@2"))
    naive = Observation(rule="r", subject="m@1", value=0.1, rows=100,
                        at=dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        step(rl, None, naive)


def test_state_round_trips_through_a_row() -> None:
    state, _ = step(rule(), None, obs(0.9))
    row = {f: getattr(state, f) for f in AlertState.__dataclass_fields__}
    assert AlertState.from_row({**row, "id": 7}) == state


# -- config ----------------------------------------------------------------------------

BASE = {"project": "p", "task": "classification",
        "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s", "target": "y"},
        "split": {"by": "random", "holdout_share": 0.2}}


def config(alerts: Any = None, **monitoring: Any) -> Any:
    m = {**monitoring, **({"alerts": alerts} if alerts is not None else {})}
    return validate_config({**BASE, "monitoring": m}).monitoring


def test_shipped_defaults_are_present() -> None:
    m = config()
    assert m.interval_s == 60 and m.alerts.webhook is None
    got = {r.name: (r.metric, r.direction, r.threshold, r.resolve, r.for_s,
                    r.window.by, r.window.seconds, r.min_rows, r.severity)
           for r in m.alerts.rules}
    day = 86400.0
    assert got == {
        "input_drift": ("drift.columns", "above", 0.0, 0.0, 0, "time", day, 1000, "warning"),
        "prediction_drift": ("prediction.score", "above", 0.1, 0.05, 0, "time", day, 1000,
                             "warning"),
        "quality": ("quality.degradation", "above", 0.1, 0.05, 0, "time", 7 * day, 200,
                    "warning"),
        "estimated_quality": ("estimated.degradation", "above", 0.1, 0.05, 0, "time", day,
                              1000, "warning"),
        "skew": ("skew.share", "above", 0.0, 0.0, 0, "time", day, 1, "critical"),
        "errors": ("errors.rate", "above", 0.05, 0.01, 300, "time", 3600.0, 100, "warning"),
    }


def test_a_given_list_replaces_the_defaults() -> None:
    assert config({"rules": []}).alerts.rules == []
    text = """
rules:
  - name: auc
    metric: quality.roc_auc
    direction: below
    threshold: 0.8
    for: 1h30m
    window: {by: event, size: 7d}
  - {name: big, metric: drift.columns, threshold: 3, window: {by: count, size: 10000}}
webhook: {url: "http://127.0.0.1:9093/hook", headers: {Authorization: Bearer x}}
"""
    a = config(parse_yaml(text), interval_s=5).alerts
    auc, big = a.rules
    assert (auc.resolve, auc.for_s, auc.window.seconds, auc.min_rows) == (0.8, 5400, 7 * 86400,
                                                                          100)
    assert (big.window.by, big.window.rows, big.window.seconds) == ("count", 10000, None)
    w = a.webhook
    assert (w.timeout_s, w.retries, w.backoff_s, w.headers) == (5, 3, 1,
                                                                {"Authorization": "Bearer x"})


def test_every_quality_metric_is_a_metric_of_some_task() -> None:
    from cd4ml.tasks import TASKS

    task_metrics = {m for t in TASKS.values() for m in t.metrics}
    assert set(QUALITY_METRICS) <= task_metrics
    assert set(TASKS["classification"].metrics) | set(TASKS["regression"].metrics) <= \
        set(QUALITY_METRICS)
    names = alert_metric_names()
    assert len(names) == len(set(names)) == len(ALERT_METRICS) + 2 * len(QUALITY_METRICS)
    for m in names:
        assert config({"rules": [{"name": "x", "metric": m, "threshold": 1}]})


def refused(alerts: Any, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as err:
        config(alerts)
    return str(err.value)


def test_an_unknown_metric_is_refused_naming_key_value_and_allowed_names() -> None:
    msg = refused({"rules": [{"name": "a", "metric": "drift.share", "threshold": 1},
                             {"name": "b", "metric": "quality.auc", "threshold": 1}]},
                  r"monitoring\.alerts\.rules\.1\.metric = 'quality\.auc': unknown metric")
    assert "did you mean 'quality.pr_auc'?" in msg or "did you mean 'quality.roc_auc'?" in msg
    assert "drift.share" in msg and "latency.p99_ms" in msg and "quality.<m>" in msg
    assert "log_loss" in msg and "\n" not in msg
    refused({"rules": [{"name": "a", "metric": "accuracy", "threshold": 1}]},
            r"metric = 'accuracy': unknown metric")


@pytest.mark.parametrize("spec,match", [
    ({"direction": "above", "threshold": 0.5, "resolve": 0.6},
     r"rules\.0\.resolve = 0\.6: must be <= threshold \(0\.5\) for direction 'above'"),
    ({"direction": "below", "threshold": 0.8, "resolve": 0.7},
     r"rules\.0\.resolve = 0\.7: must be >= threshold \(0\.8\) for direction 'below'"),
    ({"threshold": 0.5, "for": "ten minutes"}, r"rules\.0\.for = 'ten minutes': .*duration"),
    ({"threshold": 0.5, "for": "-5m"}, r"rules\.0\.for = '-5m'"),
    ({"threshold": 0.5, "window": {"by": "count", "size": "1d"}},
     r"rules\.0\.window = .*count window takes a number of rows"),
    ({"threshold": 0.5, "window": {"by": "time", "size": "0s"}},
     r"rules\.0\.window = .*duration > 0"),
    ({"threshold": 0.5, "window": {"by": "rows", "size": 5}}, r"rules\.0\.window\.by = 'rows'"),
    ({"threshold": 0.5, "min_rows": 0}, r"rules\.0\.min_rows = 0"),
    ({"threshold": 0.5, "severity": "page"}, r"rules\.0\.severity = 'page'"),
    ({"threshold": float("nan")}, r"rules\.0\.threshold = nan"),
    ({}, r"rules\.0\.threshold = None: required key is missing"),
    ({"threshold": 0.5, "treshold": 0.4}, r"rules\.0\.treshold = 0\.4: unknown key"),
])
def test_bad_rules_are_refused_naming_the_key(spec: dict[str, Any], match: str) -> None:
    refused({"rules": [{"name": "a", "metric": "drift.share", **spec}]}, match)


def test_repeated_names_and_bad_webhooks_are_refused() -> None:
    r = {"name": "a", "metric": "drift.share", "threshold": 1}
    refused({"rules": [r, r]}, r"monitoring\.alerts\.rules = .*unique; repeated: a")
    refused({"webhook": {"url": "ftp://x"}}, r"webhook\.url = 'ftp://x': must be an http")
    refused({"webhook": {}}, r"webhook\.url = None: required key is missing")
    refused({"webhook": {"url": "http://h", "timeout_s": 0}}, r"webhook\.timeout_s = 0")
    refused({"webhook": {"url": "http://h", "retries": -1}}, r"webhook\.retries = -1")
    with pytest.raises(ConfigError, match=r"monitoring\.interval_s = -1"):
        config(interval_s=-1)
    assert config(interval_s=0).interval_s == 0  # not evaluated inside cd4ml serve


def test_durations() -> None:
    assert [parse_duration(v) for v in ("0s", "250ms", "10m", "1h30m", "2d", "1w", 7.5)] == \
        [0, 0.25, 600, 5400, 172800, 604800, 7.5]
    for bad in ("", "10", "m", "1 h", "1h 30m", True, None, "5x"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
