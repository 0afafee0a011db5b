"""Alias moves are compare-and-set, on SQLite and PostgreSQL, audited either way."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cd4ml.errors import AliasConflictError
from cd4ml.store import MetadataStore
from cd4ml.store.registry_ops import ANY_VERSION

import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)
db_url, make_store, store = fx.fixtures()


def _versions(db: MetadataStore, n: int, **kw: Any) -> None:
    for _ in range(n):
        db.register_version("sales", digest="a" * 64, kind="candidate", model_type="lightgbm",
                            actor="tester", **kw)


def _audit(db: MetadataStore, action: str) -> list[dict[str, Any]]:
    return [e for e in db.list_audit(object="sales@production") if e["action"] == action]


def test_a_stale_expected_version_is_refused_audited_and_changes_nothing(
        store: MetadataStore) -> None:
    _versions(store, 3)
    store.set_alias("sales", "production", 1, expected=None, actor="ci")
    with pytest.raises(AliasConflictError) as err:
        store.set_alias("sales", "production", 3, expected=2, actor="alice",
                        reason="ship v3")
    assert str(err.value).startswith(
        "sales@production not moved to v3: expected it at v2, found v1")
    c = err.value.conflict
    assert (c.alias, c.version, c.expected, c.found) == ("production", 3, 2, 1)
    assert store.alias_version("sales", "production") == 1
    (refusal,) = _audit(store, "set_alias_refused")
    assert refusal["actor"] == "alice" and refusal["reason"] == "ship v3"
    assert refusal["detail"] == {"version": 3, "expected": 2, "found": 1}
    assert refusal["at"] is not None
    # 'unset' is an expectation too: the alias is set, so it is refused
    with pytest.raises(AliasConflictError, match="expected it at unset, found v1"):
        store.set_alias("sales", "production", 2, expected=None, actor="alice")
    # the right expectation moves it, and the move is audited with it
    assert store.set_alias("sales", "production", 3, expected=1, actor="alice") == 1
    assert store.alias_version("sales", "production") == 3
    assert _audit(store, "set_alias")[0]["detail"] == {"version": 3, "previous": 1,
                                                       "expected": 1}
    assert store.set_alias("sales", "production", 2, expected=ANY_VERSION,
                           actor="alice") == 3
    assert store.alias_version("sales", "production") == 2
    assert store.alias_version("sales", "staging") is None
    assert store.alias_version("nope", "production") is None


def test_registration_with_a_stale_expectation_registers_but_leaves_the_alias(
        store: MetadataStore) -> None:
    _versions(store, 2)
    store.set_alias("sales", "production", 2, expected=None, actor="ci")
    store.set_alias("sales", "production", 1, expected=2, actor="alice", reason="rollback")
    done = store.register_version("sales", digest="b" * 64, kind="candidate",
                                  model_type="lightgbm", actor="cd4ml run", reason="passed",
                                  set_aliases={"production": 2, "staging": None})
    assert done.version == 3 and done.moved == {"staging": None}
    (c,) = done.refused
    assert (c.alias, c.version, c.expected, c.found) == ("production", 3, 2, 1)
    assert store.alias_version("sales", "production") == 1  # the rollback stands
    assert store.alias_version("sales", "staging") == 3
    assert store.resolve("sales", 3)["digest"] == "b" * 64
    (refusal,) = _audit(store, "set_alias_refused")
    assert refusal["actor"] == "cd4ml run"
    assert refusal["detail"] == {"version": 3, "expected": 2, "found": 1}


def _hold_write_lock(db: MetadataStore) -> Any:
    """A connection holding what every alias move of 'sales' must take first."""
    from cd4ml.store._engine import WRITE_OPTION

    conn = db.engine.connect()
    conn.execution_options(**{WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
    conn.begin()
    conn.execute(sa.text("SELECT name FROM models WHERE name = 'sales' FOR UPDATE")
                 if db.dialect == "postgresql" else sa.text("SELECT 1"))
    return conn


def _waiting_on_locks(db: MetadataStore) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND query LIKE '%FROM models%FOR UPDATE%'")
        ).scalar())


def test_two_moves_from_the_same_version_at_once_one_wins(
        db_url: str, tmp_path: Path, make_store: Any) -> None:
    """Both movers read v1 and wait on the lock together; the check runs after the lock,
    so the second sees the first's move and is refused (a check before it lets both)."""
    db = make_store()
    _versions(db, 3)
    db.set_alias("sales", "production", 1, expected=None, actor="ci")
    ctx = fx.fork_context()
    go, out = ctx.Event(), ctx.Queue()
    ready = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=fx.alias_worker,
                         args=(db_url, str(tmp_path), target, 1, ev, go, out))
             for target, ev in zip((2, 3), ready, strict=True)]
    for p in procs:
        p.start()
    assert all(ev.wait(30) for ev in ready)
    held = _hold_write_lock(db)
    try:
        go.set()
        if db.dialect == "postgresql":
            deadline = time.monotonic() + 30
            while _waiting_on_locks(db) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _waiting_on_locks(db) >= 2  # (other test runs may share the database)
        else:
            time.sleep(0.5)  # both are inside BEGIN IMMEDIATE, waiting (busy timeout 30 s)
        held.rollback()
        results = sorted([out.get(timeout=60) for _ in procs], key=str)
    finally:
        held.close()
        for p in procs:
            p.join(10)
            p.kill()
    wins = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, str)]
    assert len(wins) == 1 and len(refused) == 1, results
    assert refused[0].startswith("AliasConflictError: sales@production not moved to v")
    assert "expected it at v1, found v" in refused[0]
    winner = db.alias_version("sales", "production")
    assert winner in (2, 3) and f"found v{winner}" in refused[0]
    assert len(_audit(db, "set_alias_refused")) == 1
