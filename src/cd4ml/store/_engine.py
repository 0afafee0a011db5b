"""Database engines for the metadata store: URL checks, SQLite settings, migrations.

One URL picks the backend: ``sqlite:///PATH`` (relative paths resolve against the
project root) or ``postgresql+psycopg://USER@HOST:PORT/DB``. SQLite connections run in
WAL mode with a busy timeout and foreign keys on; write transactions start with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing. ``postgresql://``
means ``postgresql+psycopg://``.

>>> normalize_url("mysql://u@h/db")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
cd4ml.errors.ConfigError: store.metadata_url = 'mysql://u@h/db': unknown scheme 'mysql'; ...
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from cd4ml.errors import ConfigError, MissingExtraError, StoreError

__all__ = ["normalize_url", "create_engine", "migrate", "head_revision", "current_revision",
           "WRITE_OPTION", "URL_KEY", "ALLOWED_SCHEMES"]

URL_KEY = "store.metadata_url"
ALLOWED_SCHEMES = "sqlite:///PATH, postgresql+psycopg://USER@HOST:PORT/DB"
#: Execution option marking a connection whose transaction writes (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "cd4ml_write"
BUSY_TIMEOUT_S = 30.0
_MIGRATIONS = Path(__file__).with_name("migrations")


def _shown(url: str | URL) -> str:
    """``url`` as text with any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return str(url)


def normalize_url(url: str | URL, *, root: Path | None = None) -> URL:
    """Check ``url`` and make it concrete: absolute SQLite path, psycopg driver.

    Relative SQLite paths resolve against ``root`` (default: the working directory) and
    their parent folder is created. ``postgresql://`` means ``postgresql+psycopg://``.
    """
    shown = _shown(url)
    try:
        u = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"not a database URL; allowed: {ALLOWED_SCHEMES}", key=URL_KEY,
                          value=shown) from None
    backend, _, driver = u.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        db = u.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            return u.set(drivername="sqlite")
        path = Path(db).expanduser()
        if not path.is_absolute():
            path = (root if root is not None else Path.cwd()) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return u.set(drivername="sqlite", database=str(path))
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        if backend == "postgres":
            raise ConfigError("write postgresql+psycopg:// (not postgres://)", key=URL_KEY,
                              value=shown)
        if importlib.util.find_spec("psycopg") is None:
            raise MissingExtraError("PostgreSQL metadata", "postgres", "psycopg")
        return u.set(drivername="postgresql+psycopg")
    what = (f"unsupported driver {driver!r} for {backend}" if backend in
            ("sqlite", "postgresql") else f"unknown scheme {u.drivername!r}")
    raise ConfigError(f"{what}; allowed: {ALLOWED_SCHEMES}", key=URL_KEY, value=shown)


def _sqlite_events(engine: sa.Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not BEGIN on its own; we do
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not memory:
            # WAL is a property of the file: set it once. Switching needs a moment of
            # exclusive access and SQLite does not wait for it, so retry within the timeout.
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                try:
                    cur.execute("PRAGMA journal_mode = WAL")
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            cur.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _forget_connections_after_fork(engine: sa.Engine) -> None:
    """A forked child must not reuse its parent's connections: drop them (unclosed)."""
    ref = weakref.ref(engine)

    def after_fork() -> None:
        child_engine = ref()
        if child_engine is not None:
            child_engine.dispose(close=False)

    os.register_at_fork(after_in_child=after_fork)


def create_engine(url: URL) -> sa.Engine:
    """An engine for a URL from :func:`normalize_url`."""
    if url.get_backend_name() == "sqlite":
        memory = (url.database or ":memory:") == ":memory:"
        kw: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S,
                                               "check_same_thread": False}}
        if memory:
            kw["poolclass"] = StaticPool
        engine = sa.create_engine(url, **kw)
        _sqlite_events(engine, memory=memory)
        if not memory:  # an in-memory database lives in its one connection: keep it
            _forget_connections_after_fork(engine)
        return engine
    engine = sa.create_engine(url, pool_pre_ping=True)
    _forget_connections_after_fork(engine)
    return engine


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    return cfg


#: The newest migration's revision id; a test checks it matches Alembic's head.
HEAD_REVISION = "0004"


@functools.cache
def head_revision() -> str:
    """The newest schema revision this cd4ml knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: sa.Connection) -> str | None:
    """The schema revision recorded in the database (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: sa.Engine) -> None:
    """Upgrade the database to :func:`head_revision`; a no-op when already there.

    The upgrade runs in one transaction holding a lock (SQLite: the write lock;
    PostgreSQL: an advisory lock per schema), so processes opening a fresh store at the
    same time do not race, and a killed process leaves the old schema intact.
    """
    with engine.connect() as conn:  # fast path without importing alembic
        try:
            found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        except sa.exc.DBAPIError:
            found = []
        if found == [HEAD_REVISION]:
            return
    from alembic import command
    from alembic.util import CommandError

    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock("
                                     "hashtext('cd4ml-migrate:' || current_schema()))"))
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                found = current_revision(conn)
                raise StoreError(
                    f"the metadata store {_shown(engine.url)} has schema revision "
                    f"{found!r}, which this cd4ml does not know (it knows up to {head!r}); "
                    f"upgrade cd4ml ({exc})") from None
