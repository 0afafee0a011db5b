"""Shared fixtures of the store tests, and the workers the multi-process tests fork.

Metadata tests run on SQLite (a file in tmp_path) and on the real PostgreSQL server at
``CD4ML_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
each test in a fresh schema that is dropped afterwards. Without a reachable server the
PostgreSQL variants skip, unless ``CD4ML_REQUIRE_POSTGRES=1``.

Test modules load this file by path (pytest runs with ``--import-mode=importlib``, so
``tests/`` is not importable). The multi-process tests fork the workers at the end.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# -- PostgreSQL ------------------------------------------------------------------------

def pg_url() -> str:
    return os.environ.get("CD4ML_TEST_POSTGRES_URL", DEFAULT_PG)


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@functools.cache
def pg_unreachable() -> str | None:
    """Why the test server cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(_libpq(pg_url()), connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {pg_url()} is unreachable: {str(exc).strip().splitlines()[0]}"
    return None


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema; yields a URL whose search_path is that schema only."""
    import pytest

    reason = pg_unreachable()
    if reason:
        if os.environ.get("CD4ML_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (and CD4ML_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(pg_url()), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(pg_url()).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(pg_url()), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- fixtures --------------------------------------------------------------------------

def _fixtures() -> tuple[Callable[..., Any], ...]:
    import pytest

    @pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
    def db_url(request: Any, tmp_path: Path) -> Iterator[str]:
        """A metadata URL for an empty database: SQLite file, or fresh PostgreSQL schema."""
        if request.param == "sqlite":
            yield f"sqlite:///{tmp_path / 'meta' / 'metadata.db'}"
        else:
            with pg_schema() as url:
                yield url

    @pytest.fixture
    def make_store(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
        """Open MetadataStores on ``db_url``; all are closed before the schema drops."""
        from cd4ml.store import MetadataStore

        opened: list[Any] = []

        def make(**kw: Any) -> Any:
            store = MetadataStore(db_url, root=tmp_path, **kw)
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()

    @pytest.fixture
    def store(make_store: Callable[..., Any]) -> Any:
        """An open MetadataStore on an empty database."""
        return make_store()

    return db_url, make_store, store


def fixtures() -> tuple[Callable[..., Any], ...]:
    """``(db_url, make_store, store)`` fixtures, to bind to names in a test module."""
    return _fixtures()


class Clock:
    """A clock that advances one second per call, for ordered timestamps."""

    def __init__(self) -> None:
        import datetime as dt

        self.now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self.step = dt.timedelta(seconds=1)

    def __call__(self) -> Any:
        self.now += self.step
        return self.now


# -- workers (forked, so they start in milliseconds with cd4ml already imported) --------

def fork_context() -> Any:
    import multiprocessing

    return multiprocessing.get_context("fork")


def register_worker(url: str, root: str, model: str, n: int, go: Any, out: Any) -> None:
    """Wait for ``go``, open the store (racing the others' migration), register n versions."""
    try:
        from cd4ml.store import MetadataStore
        from cd4ml.store.registry_ops import ANY_VERSION

        go.wait(30)
        store = MetadataStore(url, root=root)
        got = [store.register_version(model, digest=f"{os.getpid():064d}", kind="candidate",
                                      model_type="lightgbm", metrics={"i": i},
                                      set_aliases={"latest-registered": ANY_VERSION},
                                      actor="worker").version
               for i in range(n)]
        store.close()
        out.put(got)
    except BaseException as exc:  # report to the parent instead of dying silently
        out.put(f"{type(exc).__name__}: {exc}")


def crash_worker(url: str, root: str, model: str, conn: Any) -> None:
    """Register versions (moving aliases) until killed; send each version number."""
    from cd4ml.store import MetadataStore

    store = MetadataStore(url, root=root)
    i, production = 0, None
    while True:
        i += 1
        moves = {"production": production, "staging": i - 1 or None} if i % 2 else \
            {"staging": i - 1 or None}
        v = store.register_version(
            model, digest=f"{i:064d}", kind="candidate", model_type="lightgbm",
            lineage={"i": i}, set_aliases=moves, actor="worker", reason="crash test")
        assert not v.refused, v.refused  # the only writer: every expectation holds
        production = v.version if i % 2 else production
        conn.send(v.version)


def lock_worker(path: str, hold_s: float, locked: Any) -> None:
    """Hold the project lock for ``hold_s`` seconds; set ``locked`` once it is held."""
    from cd4ml.store import project_lock

    with project_lock(path):
        locked.set()
        time.sleep(hold_s)


def child_creates_run(store: Any, out: Any) -> None:
    """Use a store opened by the parent before the fork."""
    try:
        out.put(store.create_run("child"))
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def alias_worker(url: str, root: str, version: int, expected: int, ready: Any, go: Any,
                 out: Any) -> None:
    """Open the store, set ``ready``, wait for ``go``, then move sales@production to
    ``version`` from ``expected``; send the previous version or the error."""
    try:
        from cd4ml.store import MetadataStore

        store = MetadataStore(url, root=root)  # opening migrates: a write, before the lock
        ready.set()
        go.wait(30)
        out.put(store.set_alias("sales", "production", version, expected=expected,
                                actor=f"worker-{version}"))
        store.close()
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")
