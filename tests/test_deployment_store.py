"""Deployments in the metadata store, on SQLite and PostgreSQL: compare-and-set on the
revision (two admins at once: one writes, one is refused with a 409 error), the whole
history, rollback (to the previous or a named revision; none without history), audit
entries in the same transaction, and the default deployment read from serving.alias."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from cd4ml.errors import ConfigError, NotFoundError, RevisionConflictError, http_status
from cd4ml.rollout import manage
from cd4ml.serving.deployment import (Arm, Candidate, DeploymentState, promote,
                                      start_candidate)
from cd4ml.store import MetadataStore
from cd4ml.store.deployment_ops import deployment_object

import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)
db_url, make_store, store = fx.fixtures()


def first_state() -> DeploymentState:
    return DeploymentState(name="sales", model="sales", alias="production",
                           strategy="canary", arms=(Arm(1, "stable", 1.0),)).validate()


def stored(db: MetadataStore) -> DeploymentState:
    row = db.get_deployment("sales")
    assert row is not None
    return DeploymentState.from_dict(row)


def create(db: MetadataStore) -> DeploymentState:
    """Store revision 1: v2 as canary at 5 % over v1."""
    s, change = start_candidate(first_state(), Candidate(2, "passed"), reason="new run")
    assert db.write_deployment(s, change, expected_revision=0, actor="ann") == 1
    return s


def test_write_read_history_and_audit(store: MetadataStore) -> None:
    assert store.get_deployment("sales") is None and store.list_deployments() == []
    s = create(store)
    assert stored(store) == s and [d["name"] for d in store.list_deployments()] == ["sales"]
    s2, change = promote(s, reason="looks good")
    assert store.write_deployment(s2, change, expected_revision=1, actor="bob") == 2
    history = store.deployment_history("sales")
    assert [(e["revision"], e["actor"], e["action"], e["reason"]) for e in history] == [
        (1, "ann", "candidate", "new run"), (2, "bob", "promote", "looks good")]
    assert history[0]["from_state"] is None and history[1]["from_state"] == s.to_dict()
    assert history[1]["to_state"] == s2.to_dict() and history[1]["at"].tzname() == "UTC"
    audit = store.list_audit(object=deployment_object("sales"))
    assert [a["action"] for a in audit] == ["deployment_promote", "deployment_candidate"]
    assert audit[0]["actor"] == "bob" and audit[0]["reason"] == "looks good"
    assert audit[0]["detail"]["revision"] == 2 and audit[0]["detail"]["event_id"] == \
        history[1]["id"]
    assert audit[0]["detail"]["from"]["arms"] == s.to_dict()["arms"]
    assert audit[0]["detail"]["summary"] == "canary v2 at 25 %"


def test_a_stale_revision_is_refused_and_nothing_changes(make_store: Any) -> None:
    a, b = make_store(), make_store()
    s = create(a)
    s2, change = promote(s)
    assert a.write_deployment(s2, change, expected_revision=1, actor="ann") == 2
    with pytest.raises(RevisionConflictError, match="expected it at revision 1, found 2") \
            as info:
        b.write_deployment(s2, change, expected_revision=1, actor="bob")
    assert http_status(info.value) == 409 and info.value.found == 2
    assert stored(b) == s2 and len(b.deployment_history("sales")) == 2
    refused = b.list_audit(object=deployment_object("sales"))[0]
    assert (refused["action"], refused["actor"]) == ("deployment_refused", "bob")
    assert refused["detail"] == {"action": "promote", "expected": 1, "found": 2}
    with pytest.raises(RevisionConflictError, match="expected it at revision 0, found 2"):
        b.write_deployment(*start_candidate(first_state(), Candidate(3, "passed")),
                           expected_revision=0, actor="bob")


@pytest.mark.parametrize("existing", [False, True])
def test_two_admins_at_once_one_wins(make_store: Any, existing: bool) -> None:
    """Admins in threads, each on its own store object, read the same revision and
    write at the same moment (creating the deployment, or changing it): one writes,
    the others get the conflict."""
    setup = make_store()
    base = create(setup) if existing else first_state()
    n = 5
    stores = [make_store() for _ in range(n)]
    go = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        new, change = (promote(base, reason=f"admin {i}") if existing else
                       start_candidate(base, Candidate(2, "passed"), reason=f"admin {i}"))
        go.wait(30)
        try:
            results[i] = stores[i].write_deployment(new, change,
                                                    expected_revision=base.revision,
                                                    actor=f"admin-{i}")
        except RevisionConflictError:
            results[i] = "conflict"
        except BaseException as exc:  # report instead of dying silently
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=str) == sorted([base.revision + 1] + ["conflict"] * (n - 1),
                                              key=str), results
    history = setup.deployment_history("sales")
    assert len(history) == base.revision + 1
    winner = history[-1]["actor"]
    assert history[-1]["reason"] == f"admin {winner.split('-')[1]}"


def test_rollback_restores_a_revision_as_a_new_one(store: MetadataStore) -> None:
    s1 = create(store)
    s2, c = promote(s1)
    store.write_deployment(s2, c, expected_revision=1, actor="ann")
    s3, c = promote(s2)
    store.write_deployment(s3, c, expected_revision=2, actor="ann")
    back = store.rollback_deployment("sales", actor="cat", reason="latency up")
    assert back == {**s2.to_dict(), "revision": 4} and stored(store).arms == s2.arms
    again = store.rollback_deployment("sales", to_revision=1, actor="cat")
    assert again["revision"] == 5 and again["arms"] == s1.to_dict()["arms"]
    history = store.deployment_history("sales")
    assert [(e["revision"], e["action"], e["reason"]) for e in history[3:]] == [
        (4, "rollback", "latency up"), (5, "rollback", "rollback to revision 1")]
    audit = store.list_audit(object=deployment_object("sales"), limit=1)[0]
    assert audit["action"] == "deployment_rollback" and audit["detail"]["restored_revision"] == 1
    with pytest.raises(NotFoundError, match="no revision 9; revisions to roll back to: 1, 2, "
                                            "3, 4"):
        store.rollback_deployment("sales", to_revision=9, actor="cat")
    with pytest.raises(ConfigError, match="to = 5: is deployment 'sales'"):
        store.rollback_deployment("sales", to_revision=5, actor="cat")
    with pytest.raises(RevisionConflictError):
        store.rollback_deployment("sales", actor="cat", expected_revision=3)
    assert stored(store).revision == 5


def test_rollback_with_no_history_is_refused(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="deployment 'sales' has no history"):
        store.rollback_deployment("sales", actor="cat")
    create(store)  # revision 1, created from nothing: no earlier state
    with pytest.raises(NotFoundError, match="no earlier revision to roll back to: revision "
                                            "1 is its first"):
        store.rollback_deployment("sales", actor="cat")
    assert stored(store).revision == 1 and len(store.deployment_history("sales")) == 1


def _registry(db: MetadataStore) -> None:
    for gate, kind in (({"passed": True}, "candidate"), ({"passed": False}, "candidate"),
                       ({"passed": True}, "candidate")):
        db.register_version("sales", digest="0" * 64, kind=kind, model_type="lightgbm",
                            gate=gate, actor="test")
    db.set_alias("sales", "production", 1, expected=None, actor="test")


def test_the_default_deployment_and_its_first_change(store: MetadataStore,
                                                     tmp_path: Any) -> None:
    """No stored deployment: serving.alias is the deployment named after the model."""
    _registry(store)
    stores = SimpleNamespace(metadata=store)
    cfg = SimpleNamespace(models=SimpleNamespace(name="sales"),
                          serving=SimpleNamespace(alias="production"))
    d = manage.effective_deployment(stores, cfg)  # type: ignore[arg-type]
    assert (d.name, d.strategy, d.revision, d.extra) == ("sales", "single", 0,
                                                         {"default": True})
    assert [(a.version, a.role, a.share, a.gate) for a in d.arms] == [(1, "stable", 1.0,
                                                                       "passed")]
    with pytest.raises(ConfigError, match="version = 2: v2's gate is failed"):
        manage.offer_candidate(stores, cfg, "sales", 2, who="ann")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="model 'sales' has no version 7"):
        manage.offer_candidate(stores, cfg, "sales", 7, who="ann")  # type: ignore[arg-type]
    assert store.get_deployment("sales") is None
    s = manage.offer_candidate(stores, cfg, "sales", 3, who="ann")  # type: ignore[arg-type]
    assert [a.version for a in s.arms] == [3] and s.revision == 1 and s.extra == {}
    first = store.deployment_history("sales")[0]
    assert first["from_state"]["extra"] == {"default": True}  # what it was before: the alias
    back = manage.rollback(stores, "sales", who="ann")  # type: ignore[arg-type]
    assert [a.version for a in back.arms] == [1] and back.revision == 2
    now = manage.effective_deployment(stores, cfg)  # type: ignore[arg-type]
    assert (now.revision, now.extra) == (2, {})  # stored now: not the default any more


def test_a_database_at_the_alerts_schema_is_upgraded(db_url: str, tmp_path: Any) -> None:
    from alembic import command

    from cd4ml.store import _engine

    engine = _engine.create_engine(_engine.normalize_url(db_url, root=tmp_path))
    with engine.connect() as conn:
        cfg = _engine._alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.commit()
    engine.dispose()
    with MetadataStore(db_url, root=tmp_path) as db:
        names = set(sa.inspect(db.engine).get_table_names())
        assert {"deployments", "deployment_events"} <= names
        create(db)
        assert stored(db).revision == 1
