"""The metadata store on SQLite and PostgreSQL: migrations, runs, snapshots, cache, audit.

Every test taking ``store``/``make_store``/``db_url`` runs on both backends.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from cd4ml.errors import ConfigError, MissingExtraError, NotFoundError, StoreError
from cd4ml.store import MetadataStore, Stores, open_stores
from cd4ml.store._engine import current_revision, head_revision
from cd4ml.store.tables import metadata_obj


import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)
db_url, make_store, store = fx.fixtures()


# -- migrations ------------------------------------------------------------------------

def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_fresh_database_is_migrated_to_head(store: MetadataStore) -> None:
    assert {"alembic_version", *metadata_obj.tables} <= _tables(store.engine)
    with store.engine.connect() as conn:
        assert current_revision(conn) == head_revision() == "0004"
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1


@pytest.mark.postgres
def test_postgres_tables_live_in_the_test_schema() -> None:
    with fx.pg_schema() as url, MetadataStore(url) as store, store.engine.connect() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
        found = set(conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema}).scalars())
    assert schema.startswith("t_") and "alembic_version" in found and "runs" in found


def test_opening_twice_is_a_no_op(make_store: Any) -> None:
    first = make_store()
    run_id = first.create_run("p")
    second = make_store()
    assert second.get_run(run_id)["project"] == "p"
    with second.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_migrated_schema_matches_the_tables_module(store: MetadataStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata_obj)
    assert diff == []


def test_a_database_of_revision_0003_is_upgraded_keeping_its_runs(db_url: str) -> None:
    """A store made before child runs (0003) opens with this cd4ml: runs.parent_id is
    added, the old runs are kept, top-level, and trials can be recorded under them."""
    from alembic import command

    from cd4ml.store import _engine

    engine = _engine.create_engine(_engine.normalize_url(db_url))
    with engine.connect() as conn, conn.begin():
        cfg = _engine._alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.execute(sa.text("INSERT INTO runs (id, project, status, started_at) "
                             "VALUES ('old0run00001', 'p', 'succeeded', :t)"),
                     {"t": dt.datetime(2026, 1, 1)})
    engine.dispose()
    with MetadataStore(db_url) as db:
        with db.engine.connect() as conn:
            assert current_revision(conn) == "0004"
        assert [r["id"] for r in db.list_runs()] == ["old0run00001"]
        assert db.get_run("old0run00001")["parent_id"] is None
        child = db.record_child_run("old0run00001", project="p", status="succeeded",
                                    duration_s=1.5, params={"trial": 0},
                                    metrics={"validation.wmae": 2.0}, summary={"trial": 0})
        assert [r["id"] for r in db.list_runs()] == ["old0run00001"]  # trials: not here
        (got,) = db.child_runs(["old0run00001"])["old0run00001"]
        assert got["id"] == child and got["duration_s"] == 1.5 and got["metrics"] == {
            "validation.wmae": 2.0} and got["ended_at"] > got["started_at"]


def test_a_child_run_needs_its_parent(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        store.record_child_run("nope", project="p", status="succeeded", duration_s=0.0)
    assert store.list_runs() == []


def test_sqlite_settings(tmp_path: Path) -> None:
    with MetadataStore("sqlite:///.cd4ml/metadata.db", root=tmp_path) as db:
        assert (tmp_path / ".cd4ml" / "metadata.db").is_file()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


# -- runs ------------------------------------------------------------------------------

def test_run_lifecycle(make_store: Any) -> None:
    db = make_store(clock=fx.Clock())
    run_id = db.create_run("walmart", params={"seed": 1}, config_hash="c" * 64,
                           git_commit="abc123", git_dirty=True)
    assert len(run_id) == 12 and int(run_id, 16) >= 0
    run = db.get_run(run_id)
    assert run["status"] == "running" and run["params"] == {"seed": 1}
    assert run["git_dirty"] is True and run["ended_at"] is None
    assert run["started_at"] == dt.datetime(2024, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    done = db.finish_run(run_id, "succeeded", metrics={"wmae": 1.25, "bad": math.nan},
                         artifacts={"model": "a" * 64}, snapshots={"train": "s" * 64},
                         gate={"passed": True}, summary={"rows": 10})
    assert done["status"] == "succeeded" and done["duration_s"] == 1.0
    assert done["metrics"] == {"wmae": 1.25, "bad": None}
    assert done["artifacts"] == {"model": "a" * 64} and done["gate"] == {"passed": True}
    assert done["ended_at"].tzinfo == dt.UTC and done["error"] is None
    assert db.get_run(run_id) == done
    with pytest.raises(StoreError, match="already finished"):
        db.finish_run(run_id, "failed")
    with pytest.raises(StoreError, match="status == 'done'"):
        db.finish_run(db.create_run("p"), "done")


def test_failed_run_keeps_its_error(store: MetadataStore) -> None:
    run_id = store.create_run("p")
    run = store.finish_run(run_id, "failed", error="stage train failed: boom")
    assert run["error"] == "stage train failed: boom" and run["gate"] is None


def test_get_run_by_prefix_and_list_newest_first(make_store: Any) -> None:
    db = make_store(clock=fx.Clock())
    ids = [db.create_run("a" if i % 2 else "b") for i in range(4)]
    assert [r["id"] for r in db.list_runs()] == ids[::-1]
    assert [r["id"] for r in db.list_runs(2)] == ids[:1:-1]
    assert [r["id"] for r in db.list_runs(project="a")] == [ids[3], ids[1]]
    assert db.get_run(ids[0][:8])["id"] == ids[0]
    with pytest.raises(NotFoundError, match="no run 'zzz'; latest runs: " + ids[3]):
        db.get_run("zzz")


def test_ambiguous_prefix(store: MetadataStore) -> None:
    ids = [store.create_run("p") for _ in range(40)]
    first = {i[0] for i in ids}
    common = next(c for c in first if sum(i[0] == c for i in ids) > 1)
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.get_run(common)


def test_empty_store_messages(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="there are no runs yet"):
        store.get_run("abc")
    assert store.list_runs() == [] and store.list_audit() == []


# -- snapshots, cache, audit -------------------------------------------------------------

def test_snapshots(store: MetadataStore) -> None:
    kw: dict[str, Any] = dict(snapshot_id="f" * 64, source="train", path="data/train.csv",
                              rows=421570, columns=[{"name": "Store", "type": "int64"}],
                              data_digest="d" * 64, profile_digest="e" * 64)
    row = store.put_snapshot(**kw)
    assert row["rows"] == 421570 and row["columns"][0]["name"] == "Store"
    again = store.put_snapshot(**{**kw, "rows": 1})  # same content hash: kept as is
    assert again == row == store.get_snapshot("f" * 64)
    assert [s["id"] for s in store.list_snapshots("train")] == ["f" * 64]
    with pytest.raises(NotFoundError, match=r"no snapshot '0+'; latest: train \(ffff"):
        store.get_snapshot("0" * 64)


def test_stage_cache(store: MetadataStore) -> None:
    assert store.cache_get("features", "k1") is None
    run_id = store.create_run("p")
    store.cache_put("features", "k1", {"frame": "a" * 64, "rows": 10}, run_id=run_id,
                    duration_s=2.5)
    hit = store.cache_get("features", "k1")
    assert hit is not None and hit["outputs"] == {"frame": "a" * 64, "rows": 10}
    assert hit["run_id"] == run_id and hit["duration_s"] == 2.5
    store.cache_put("features", "k1", {"frame": "b" * 64})
    assert store.cache_get("features", "k1")["outputs"] == {"frame": "b" * 64}
    assert store.cache_get("train", "k1") is None
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        store.cache_put("train", "k", {}, run_id="nope")


def test_audit_log(make_store: Any) -> None:
    db = make_store(clock=fx.Clock())
    first = db.audit("deploy", "model@production", actor="alice", detail={"v": 1},
                     reason="release")
    db.audit("rollback", "model@production", actor="bob")
    db.audit("alert", "monitor/drift", actor="cd4ml")
    events = db.list_audit()
    assert [e["action"] for e in events] == ["alert", "rollback", "deploy"]
    assert events[-1]["id"] == first and events[-1]["detail"] == {"v": 1}
    assert events[-1]["reason"] == "release" and events[-1]["at"].tzinfo == dt.UTC
    assert len(db.list_audit(2)) == 2
    assert [e["actor"] for e in db.list_audit(object="model@production")] == ["bob", "alice"]


def test_naive_clock_is_refused(make_store: Any) -> None:
    db = make_store(clock=lambda: dt.datetime(2024, 1, 1))
    with pytest.raises(StoreError, match="naive"):
        db.create_run("p")


def test_a_forked_child_gets_its_own_connections(store: MetadataStore) -> None:
    parent_run = store.create_run("parent")  # the pool now holds a connection
    ctx = fx.fork_context()
    out = ctx.Queue()
    child = ctx.Process(target=fx.child_creates_run, args=(store, out))
    child.start()
    child_run = out.get(timeout=30)
    child.join(10)
    assert child.exitcode == 0 and len(child_run) == 12, child_run
    store.create_run("parent")
    assert {r["id"] for r in store.list_runs()} >= {parent_run, child_run}
    assert len(store.list_runs()) == 3


# -- open_stores and URLs ---------------------------------------------------------------

def _cfg(metadata_url: str, artifacts_url: str = ".cd4ml/artifacts") -> SimpleNamespace:
    return SimpleNamespace(metadata_url=metadata_url, artifacts_url=artifacts_url,
                           lock_timeout_s=0.0)


def test_open_stores_with_the_default_config(tmp_path: Path) -> None:
    from cd4ml.config import StoreConfig

    with open_stores(StoreConfig(), tmp_path) as stores:
        assert isinstance(stores, Stores) and stores.root == tmp_path
        assert stores.metadata.dialect == "sqlite"
        assert stores.artifacts.url == f"file://{tmp_path}/.cd4ml/artifacts"
        stores.metadata.create_run("p")
    assert (tmp_path / ".cd4ml" / "metadata.db").is_file()


def test_open_stores_on_both_backends(db_url: str, tmp_path: Path) -> None:
    with open_stores(_cfg(db_url), tmp_path) as stores:
        assert stores.metadata.list_runs() == []


@pytest.mark.parametrize(("url", "problem"), [
    ("mysql://u@h/db", "unknown scheme 'mysql'"),
    ("postgres://u@h/db", "write postgresql+psycopg://"),
    ("postgresql+psycopg2://u@h/db", "unsupported driver 'psycopg2'"),
    ("not a url", "not a database URL"),
])
def test_bad_metadata_urls(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_stores(_cfg(url), tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"store.metadata_url = {url!r}: ") and problem in msg
    if "scheme" in problem:
        assert "sqlite:///PATH, postgresql+psycopg://" in msg


def test_password_is_not_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        open_stores(_cfg("mysql://u:secret@h/db"), tmp_path)
    assert "secret" not in str(err.value)


def test_missing_driver_names_the_extra(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(MissingExtraError) as err:
        open_stores(_cfg("postgresql+psycopg://u@127.0.0.1/db"), tmp_path)
    assert str(err.value) == ("PostgreSQL metadata needs the 'psycopg' package: "
                              "pip install 'cd4ml[postgres]'")


def test_unreachable_postgres_is_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        MetadataStore("postgresql+psycopg://nobody:pw@127.0.0.1:1/db?connect_timeout=2")
    msg = str(err.value)
    assert msg.startswith("cannot open the metadata store postgresql+psycopg://nobody:***@")
    assert "\n" not in msg


def test_public_api_and_light_import() -> None:
    import subprocess

    import cd4ml.store

    assert sorted(cd4ml.store.__all__) == ["ArtifactStore", "MetadataStore", "Stores",
                                           "lock_holder", "open_stores", "project_lock"]
    assert all(hasattr(cd4ml.store, name) for name in cd4ml.store.__all__)
    code = ("import sys, cd4ml.store; "
            "print(sorted(m for m in ('pandas', 'alembic', 'pydantic', 'psycopg', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_head_revision_constant_matches_alembic() -> None:
    from cd4ml.store._engine import HEAD_REVISION, head_revision

    assert HEAD_REVISION == head_revision()
