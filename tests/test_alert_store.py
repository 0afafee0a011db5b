"""Alerts in the metadata store, on SQLite and PostgreSQL: episodes, restart, the
compare-and-set between evaluators, audit events, deliveries and dead letters."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from cd4ml.config.monitoring import AlertRuleConfig
from cd4ml.errors import NotFoundError, StoreError
from cd4ml.monitoring.alerts import AlertState, Observation, step
from cd4ml.store import MetadataStore
from cd4ml.store.alert_ops import ALERT_ACTOR, alert_object

import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)
db_url, make_store, store = fx.fixtures()

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
RULE = AlertRuleConfig.model_validate({"name": "drift", "metric": "drift.share",
                                       "threshold": 0.5, "resolve": 0.3, "min_rows": 10})


def obs(value: float | None, s: float = 0, *, rows: int = 100, subject: str = "m@1",
        rule: str = "drift") -> Observation:
    return Observation(rule=rule, subject=subject, value=value, rows=rows,
                       at=T0 + dt.timedelta(seconds=s), detail={"cols": ["a", "b"]})


def evaluate(db: MetadataStore, o: Observation, rule: AlertRuleConfig = RULE) -> Any:
    """What an evaluator does: read the state, step, write with the compare-and-set."""
    row = db.alert_states(o.subject).get(rule.name)
    previous = AlertState.from_row(row) if row else None
    state, change = step(rule, previous, o)
    return db.write_alert_step(state, change, previous=previous), state, change


def test_episodes_move_and_the_newest_is_current(store: MetadataStore) -> None:
    for s, v in [(0, 0.1), (60, 0.9), (120, 0.4), (180, 0.2), (240, 0.45), (300, 0.7)]:
        written, _, _ = evaluate(store, obs(v, s))
        assert written.written
    rows = store.list_alerts(subject="m@1")
    assert [(r["episode"], r["state"]) for r in rows] == [(2, "firing"), (1, "resolved")]
    current = store.alert_states("m@1")["drift"]
    assert current["episode"] == 2 and current["fired_at"] == T0 + dt.timedelta(seconds=300)
    assert current["detail"] == {"cols": ["a", "b"]} and current["insufficient"] is False
    first = rows[1]
    assert (first["fired_at"], first["resolved_at"]) == (T0 + dt.timedelta(seconds=60),
                                                         T0 + dt.timedelta(seconds=180))
    assert first["updated_at"] == T0 + dt.timedelta(seconds=240)  # band: still episode 1
    assert store.alert_states("other@1") == {}


def test_every_transition_is_audited_and_nothing_else(store: MetadataStore) -> None:
    for s, v, rows in [(0, 0.9, 100), (60, 0.9, 100), (120, None, 100), (180, 0.0, 5),
                       (240, 0.1, 100)]:
        evaluate(store, obs(v, s, rows=rows))
    events = store.list_audit(object=alert_object("drift", "m@1"))
    assert [e["action"] for e in events] == ["alert_resolved", "alert_firing"]
    assert {e["actor"] for e in events} == {ALERT_ACTOR} == {"cd4ml monitor"}
    fired = events[1]
    assert fired["detail"]["from"] == "inactive" and fired["detail"]["to"] == "firing"
    assert fired["detail"]["value"] == 0.9 and fired["detail"]["threshold"] == 0.5
    assert fired["reason"].startswith("drift.share = 0.9 > 0.5")


def test_insufficient_data_is_recorded_without_a_transition(store: MetadataStore) -> None:
    evaluate(store, obs(0.9, 0))
    written, state, change = evaluate(store, obs(0.0, 60, rows=3))
    assert written.written and change is None
    row = store.alert_states("m@1")["drift"]
    assert (row["state"], row["insufficient"], row["rows"]) == ("firing", True, 3)
    assert row["message"].startswith("insufficient data: 3 rows < min_rows 10")


def test_states_survive_a_restart(make_store: Any) -> None:
    first = make_store()
    _, state, _ = evaluate(first, obs(0.9, 0))
    first.close()
    second = make_store()
    row = second.alert_states("m@1")["drift"]
    assert AlertState.from_row(row) == state
    written, after, change = evaluate(second, obs(0.1, 60))
    assert written.written and change is not None and change.from_state == "firing"
    assert after.state == "resolved" and after.fired_at == T0


def test_a_stale_previous_is_refused(make_store: Any) -> None:
    a, b = make_store(), make_store()
    previous = None
    state, change = step(RULE, previous, obs(0.9, 0))
    assert a.write_alert_step(state, change, previous=previous).written
    # b computed from the same (empty) state: refused, told what it found
    refused = b.write_alert_step(state, change, previous=previous)
    assert not refused.written and refused.found is not None
    assert refused.found["state"] == "firing" and refused.alert_id == refused.found["id"]
    # a step from an older version of the same row is refused too
    firing = AlertState.from_row(a.alert_states("m@1")["drift"])
    resolved, change = step(RULE, firing, obs(0.1, 60))
    assert a.write_alert_step(resolved, change, previous=firing).written
    again, change = step(RULE, firing, obs(0.2, 61))
    assert not b.write_alert_step(again, change, previous=firing).written
    assert len(a.list_audit(object=alert_object("drift", "m@1"))) == 2


@pytest.mark.parametrize("start", [None, 0.1, "resolved"])
def test_two_evaluators_at_once_fire_once(make_store: Any, start: Any) -> None:
    """Evaluators in threads, each on its own store object, read the same state and
    write at the same moment: one fires, the others are refused."""
    setup = make_store()
    if start == "resolved":  # a new episode raced for: the (rule, subject, episode) key
        evaluate(setup, obs(0.9, 0))
        evaluate(setup, obs(0.1, 30))
    elif start is not None:
        evaluate(setup, obs(start, 0))
    n = 6
    stores = [make_store() for _ in range(n)]
    go = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        db = stores[i]
        row = db.alert_states("m@1").get("drift")
        previous = AlertState.from_row(row) if row else None
        state, change = step(RULE, previous, obs(0.9, 60))
        go.wait(30)
        try:
            results[i] = db.write_alert_step(state, change, previous=previous).written
        except BaseException as exc:  # report instead of dying silently
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=str) == [False] * (n - 1) + [True], results
    fired = [e for e in setup.list_audit(object=alert_object("drift", "m@1"))
             if e["action"] == "alert_firing" and e["at"] is not None]
    assert len(fired) == (2 if start == "resolved" else 1)
    states = [r["state"] for r in setup.list_alerts(subject="m@1")]
    assert states == (["firing", "resolved"] if start == "resolved" else ["firing"])


def test_list_alerts_puts_firing_first(store: MetadataStore) -> None:
    evaluate(store, obs(0.1, 0, subject="a@1"))                      # inactive
    evaluate(store, obs(0.9, 0, subject="b@1"))
    evaluate(store, obs(0.1, 10, subject="b@1"))                     # resolved
    pending = AlertRuleConfig.model_validate({**RULE.model_dump(by_alias=True),
                                              "for": "1h"})
    evaluate(store, obs(0.9, 20, subject="c@1"), pending)           # pending
    evaluate(store, obs(0.9, 30, subject="d@1"))                    # firing
    evaluate(store, obs(0.9, 40, subject="e@1"))                    # firing, newer
    got = [(r["subject"], r["state"]) for r in store.list_alerts()]
    assert got == [("e@1", "firing"), ("d@1", "firing"), ("c@1", "pending"),
                   ("b@1", "resolved"), ("a@1", "inactive")]
    assert [r["subject"] for r in store.list_alerts(states=["firing"], limit=1)] == ["e@1"]
    evaluate(store, obs(0.9, 50, subject="b@1"))                    # episode 2 of b
    assert [(r["subject"], r["episode"]) for r in store.list_alerts(current=True)
            if r["subject"] == "b@1"] == [("b@1", 2)]
    assert len(store.list_alerts(subject="b@1")) == 2


def test_deliveries_and_dead_letters(store: MetadataStore) -> None:
    written, _, _ = evaluate(store, obs(0.9, 0))
    alert_id = written.alert_id
    assert store.get_alert(alert_id)["state"] == "firing"
    assert store.count_dead_letters() == 0
    store.record_delivery(alert_id, "firing", attempts=1, status="delivered")
    store.record_delivery(alert_id, "resolved", attempts=4, status="dead",
                          last_error="ConnectError: refused")
    assert store.count_dead_letters() == 1
    dead = store.list_deliveries(status="dead")
    assert [(d["alert_id"], d["transition"], d["attempts"], d["last_error"])
            for d in dead] == [(alert_id, "resolved", 4, "ConnectError: refused")]
    assert len(store.list_deliveries(alert_id=alert_id)) == 2
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert store.count_dead_letters(since=future) == 0
    with pytest.raises(NotFoundError, match="no alert with id 999"):
        store.record_delivery(999, "firing", attempts=1, status="dead")
    with pytest.raises(StoreError, match="delivery status == 'lost'"):
        store.record_delivery(alert_id, "firing", attempts=1, status="lost")
    with pytest.raises(NotFoundError):
        store.get_alert(999)


def test_a_skipped_episode_is_refused(store: MetadataStore) -> None:
    state, change = step(RULE, None, obs(0.9, 0))
    bad = AlertState.from_row({**{f: getattr(state, f) for f in
                                  AlertState.__dataclass_fields__}, "episode": 3})
    with pytest.raises(StoreError, match="a new episode must be 1"):
        store.write_alert_step(bad, change, previous=None)
    assert store.list_alerts() == [] and store.list_audit() == []


def test_a_database_at_the_first_schema_is_upgraded(db_url: str, tmp_path: Any) -> None:
    """An existing store (revision 0001) gains the alert tables when it opens; what it
    held is kept."""
    from alembic import command

    from cd4ml.store import _engine

    engine = _engine.create_engine(_engine.normalize_url(db_url, root=tmp_path))
    with engine.connect() as conn:
        cfg = _engine._alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(sa.text("INSERT INTO runs (id, project, status, started_at) VALUES "
                             "('r1', 'p', 'running', CURRENT_TIMESTAMP)"))
        conn.commit()
    engine.dispose()
    with MetadataStore(db_url, root=tmp_path) as db:
        assert {"alerts", "alert_deliveries"} <= set(sa.inspect(db.engine).get_table_names())
        assert db.get_run("r1")["project"] == "p"
        assert evaluate(db, obs(0.9, 0))[0].written
