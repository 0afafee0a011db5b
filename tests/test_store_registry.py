"""Model versions and aliases on SQLite and PostgreSQL, with concurrency and crash tests."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cd4ml.errors import NotFoundError, StoreError
from cd4ml.store import MetadataStore


import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)
db_url, make_store, store = fx.fixtures()


def _register(db: MetadataStore, model: str = "sales", **kw: Any) -> int:
    args: dict[str, Any] = dict(digest="a" * 64, kind="candidate", model_type="lightgbm",
                                actor="tester")
    done = db.register_version(model, **{**args, **kw})
    assert not done.refused, done.refused
    return done.version


def test_register_versions_and_aliases(store: MetadataStore) -> None:
    run_id = store.create_run("p")
    v1 = _register(store, run_id=run_id, metrics={"wmae": 3.0}, gate={"passed": True},
                   lineage={"snapshots": {"train": "f" * 64}}, set_aliases={"production": None},
                   reason="gate passed")
    v2 = _register(store, kind="baseline", model_type="seasonal_naive",
                   set_aliases={"staging": None})
    assert (v1, v2) == (1, 2)
    assert _register(store, "other") == 1
    row = store.resolve("sales", "production")
    assert row["version"] == 1 and row["run_id"] == run_id and row["aliases"] == ["production"]
    assert row["metrics"] == {"wmae": 3.0} and row["lineage"]["snapshots"]["train"] == "f" * 64
    assert row["created_at"].tzname() == "UTC"
    assert store.resolve("sales", 2)["kind"] == "baseline"
    assert store.resolve("sales", "2")["aliases"] == ["staging"]
    assert store.resolve("sales", "latest")["version"] == 2
    listed = store.list_versions("sales")
    assert [(r["version"], r["aliases"]) for r in listed] == [(1, ["production"]),
                                                               (2, ["staging"])]
    assert [(r["model_name"], r["version"]) for r in store.list_versions()] == [
        ("other", 1), ("sales", 1), ("sales", 2)]
    models = {m["name"]: m for m in store.list_models()}
    assert models["sales"]["last_version"] == 2
    assert models["sales"]["aliases"] == {"production": 1, "staging": 2}


def test_register_audits_version_and_alias_moves(store: MetadataStore) -> None:
    _register(store, set_aliases={"production": None}, reason="first")
    _register(store, set_aliases={"production": 1}, actor="ci", reason="better")
    events = store.list_audit()
    assert [(e["action"], e["object"]) for e in events] == [
        ("set_alias", "sales@production"), ("register_version", "sales/2"),
        ("set_alias", "sales@production"), ("register_version", "sales/1")]
    assert events[0]["detail"] == {"version": 2, "previous": 1, "expected": 1}
    assert events[0]["actor"] == "ci" and events[0]["reason"] == "better"
    assert events[2]["detail"] == {"version": 1, "previous": None, "expected": None}
    assert events[1]["detail"]["aliases"] == ["production"]


def test_set_alias(store: MetadataStore) -> None:
    for _ in range(3):
        _register(store)
    assert store.set_alias("sales", "production", 2, expected=None, actor="alice",
                           reason="ship") is None
    assert store.set_alias("sales", "production", 3, expected=2, actor="alice") == 2
    assert store.resolve("sales", "production")["version"] == 3
    (event, *_) = store.list_audit()
    assert event["detail"] == {"version": 3, "previous": 2, "expected": 2}
    assert event["actor"] == "alice"
    with pytest.raises(NotFoundError) as err:
        store.set_alias("sales", "production", 7, expected=3, actor="alice")
    assert str(err.value) == "model 'sales' has no version 7; versions: 1..3"
    with pytest.raises(NotFoundError, match="no model 'nope'; models: sales"):
        store.set_alias("nope", "production", 1, expected=None, actor="alice")
    for bad in ("", "12", "a b", "x@y"):
        with pytest.raises(StoreError, match="alias"):
            store.set_alias("sales", bad, 1, expected=None, actor="alice")
    for wrong in (0, -1, True, "3", 2.0):
        with pytest.raises(StoreError, match=r"expected == .*must be a version number"):
            store.set_alias("sales", "production", 1, expected=wrong, actor="alice")
    assert store.resolve("sales", "production")["version"] == 3  # failures changed nothing


def test_resolve_names_what_exists(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="no model 'sales'; models: none registered yet"):
        store.resolve("sales", "production")
    _register(store, set_aliases={"production": None})
    _register(store)
    with pytest.raises(NotFoundError) as err:
        store.resolve("sales", "staging")
    assert str(err.value) == ("model 'sales' has no alias 'staging'; aliases: "
                              "production -> 1; versions: 1..2")
    with pytest.raises(NotFoundError, match="has no version 9; .*versions: 1..2"):
        store.resolve("sales", 9)


def test_register_validates_before_writing(store: MetadataStore) -> None:
    with pytest.raises(StoreError, match="kind == 'champion'"):
        _register(store, kind="champion")
    with pytest.raises(NotFoundError, match="no run 'missing'"):
        _register(store, run_id="missing", set_aliases={"production": None})
    with pytest.raises(StoreError, match="alias '7'"):
        _register(store, set_aliases={"7": None})
    with pytest.raises(StoreError, match="must map each alias to the version it is expected"):
        _register(store, set_aliases=["production"])
    assert store.list_versions() == [] and store.list_audit() == []
    assert _register(store) == 1  # nothing was allocated by the failures


# -- many processes --------------------------------------------------------------------

def test_concurrent_registrations_get_distinct_contiguous_versions(
        db_url: str, tmp_path: Path, make_store: Any) -> None:
    n_procs, n_each = 3, 10
    ctx = fx.fork_context()
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=fx.register_worker,
                         args=(db_url, str(tmp_path), "sales", n_each, go, out))
             for _ in range(n_procs)]
    for p in procs:
        p.start()
    go.set()  # all start at once, on a fresh database (migrations race too)
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            p.kill()
    assert all(isinstance(r, list) for r in results), results
    got = sorted(v for r in results for v in r)
    assert got == list(range(1, n_procs * n_each + 1))
    assert all(r == sorted(r) for r in results)
    db = make_store()
    assert [r["version"] for r in db.list_versions("sales")] == got
    assert db.resolve("sales", "latest-registered")["version"] in got
    assert len(db.list_audit()) == 2 * len(got)


def test_killed_registration_leaves_a_consistent_store(
        db_url: str, tmp_path: Path, make_store: Any) -> None:
    make_store().close()  # migrate first, so the worker starts registering at once
    ctx = fx.fork_context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=fx.crash_worker, args=(db_url, str(tmp_path), "sales", send))
    proc.start()
    try:
        seen = 0
        while seen < 15:
            assert receive.poll(30), "the worker registered nothing"
            seen = receive.recv()
        time.sleep(0.002 * (os.getpid() % 5))  # land somewhere inside a transaction
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    finally:
        proc.kill()
    db = make_store()
    versions = db.list_versions("sales")
    numbers = [r["version"] for r in versions]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= seen
    assert db.list_models()[0]["last_version"] == len(numbers)
    aliases = db.list_models()[0]["aliases"]
    assert set(aliases) == {"production", "staging"}
    assert aliases["staging"] == len(numbers)  # every registration moved staging
    assert all(1 <= v <= len(numbers) for v in aliases.values())
    registered = [e for e in db.list_audit() if e["action"] == "register_version"]
    assert len(registered) == len(numbers)
    assert _register(db) == len(numbers) + 1  # the store still works
    if db.dialect == "sqlite":
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    else:
        with db.engine.connect() as conn:
            dangling = conn.execute(sa.text(
                "SELECT count(*) FROM aliases a LEFT JOIN model_versions v "
                "ON a.model_name = v.model_name AND a.version = v.version "
                "WHERE v.version IS NULL")).scalar()
        assert dangling == 0
