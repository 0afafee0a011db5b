"""Alembic environment for the cd4ml metadata store.

cd4ml runs migrations itself when a store opens (:func:`cd4ml.store._engine.migrate`),
passing an open connection in ``config.attributes["connection"]``; the connection is
already inside the transaction that holds the migration lock. Run by hand
(``alembic -c src/cd4ml/store/alembic.ini upgrade head`` with ``sqlalchemy.url`` set),
it opens its own connection.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=None,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    """Upgrade on the given connection, or on one opened from ``sqlalchemy.url``."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


# Alembic executes this file; pytest's doctest collection only imports it.
if getattr(context, "config", None) is not None:
    if context.is_offline_mode():
        raise SystemExit("cd4ml migrations run online only; give sqlalchemy.url")
    run_migrations()
