"""The metadata store: runs, data snapshots, the stage cache and the audit log.

One class for SQLite and PostgreSQL, chosen by URL; the model registry's operations
come from :class:`~cd4ml.store.registry_ops.RegistryOps`, alerts' from
:class:`~cd4ml.store.alert_ops.AlertOps`, deployments' from
:class:`~cd4ml.store.deployment_ops.DeploymentOps`. Every method runs in one
transaction, so a killed process leaves either all of a change or none of it. Rows
come back as plain dicts with timezone-aware UTC datetimes.

>>> import datetime as dt
>>> clock = lambda: dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
>>> with MetadataStore("sqlite://", clock=clock) as db:
...     run_id = db.create_run("demo", params={"seed": 0})
...     run = db.finish_run(run_id, "succeeded", metrics={"wmae": 1.5})
...     run["status"], run["duration_s"], run["metrics"], run["started_at"].tzname()
('succeeded', 0.0, {'wmae': 1.5}, 'UTC')
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from cd4ml.errors import NotFoundError, StoreError
from cd4ml.store import _engine
from cd4ml.store.alert_ops import AlertOps
from cd4ml.store.deployment_ops import DeploymentOps
from cd4ml.store.registry_ops import RegistryOps
from cd4ml.store.tables import RUN_STATUSES, audit_events, runs, snapshots, stage_cache

__all__ = ["MetadataStore", "Row"]

Row = dict[str, Any]
Clock = Callable[[], dt.datetime]
_HEX = re.compile(r"^[0-9a-f]+$")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MetadataStore(RegistryOps, AlertOps, DeploymentOps):
    """Runs, snapshots, stage cache, model registry and audit log in one database.

    Parameters
    ----------
    url:
        ``sqlite:///PATH`` (relative to ``root``), ``sqlite://`` (in memory) or
        ``postgresql+psycopg://USER@HOST:PORT/DB``.
    root:
        Folder that relative SQLite paths resolve against (default: working directory).
    clock:
        Returns the current time (timezone-aware); injectable for tests.
    migrate:
        Upgrade the schema to the newest revision when opening (default True).
    """

    def __init__(self, url: str | sa.URL, *, root: str | Path | None = None,
                 clock: Clock | None = None, migrate: bool = True) -> None:
        self.url = _engine.normalize_url(url, root=Path(root) if root is not None else None)
        self._engine = _engine.create_engine(self.url)
        self._clock = clock or _utcnow
        if migrate:
            try:
                _engine.migrate(self._engine)
            except sa.exc.OperationalError as exc:
                self._engine.dispose()
                first = str(exc.orig or exc).strip().splitlines()[0]
                raise StoreError(f"cannot open the metadata store {self}: {first}") from None

    # -- plumbing ------------------------------------------------------------------

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"MetadataStore({str(self)!r})"

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (for tests and for the dashboard's read-only queries)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``'sqlite'`` or ``'postgresql'``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A connection inside a write transaction, committed on success."""
        with self._engine.connect() as conn:
            conn.execution_options(**{_engine.WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise StoreError(f"the clock returned a naive datetime {now!r}; it must be aware")
        return now.astimezone(dt.UTC)

    def _insert(self, table: sa.Table) -> Any:
        """A dialect insert that supports ``on_conflict_do_nothing/do_update``."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _require_run(self, conn: sa.Connection, run_id: str) -> None:
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise NotFoundError(f"no run {run_id!r}: record the run before what it made")

    def _audit(self, conn: sa.Connection, *, at: dt.datetime, actor: str, action: str,
               object: str, detail: Mapping[str, Any] | None, reason: str | None) -> int:
        result = conn.execute(sa.insert(audit_events).values(
            at=at, actor=actor, action=action, object=object,
            detail=dict(detail) if detail is not None else None, reason=reason))
        return int(result.inserted_primary_key[0])

    # -- runs ----------------------------------------------------------------------

    def create_run(self, project: str, *, params: Mapping[str, Any] | None = None,
                   config_hash: str | None = None, git_commit: str | None = None,
                   git_dirty: bool | None = None) -> str:
        """Start a run (status ``running``) and return its 12-character id."""
        run_id = uuid.uuid4().hex[:12]
        with self._write() as conn:
            conn.execute(sa.insert(runs).values(
                id=run_id, project=project, status="running", started_at=self._now(),
                git_commit=git_commit, git_dirty=git_dirty, config_hash=config_hash,
                params=dict(params or {}), metrics={}, snapshots={}, artifacts={}))
        return run_id

    def record_child_run(self, parent_id: str, *, project: str, status: str,
                         duration_s: float, params: Mapping[str, Any] | None = None,
                         metrics: Mapping[str, Any] | None = None, error: str | None = None,
                         summary: Mapping[str, Any] | None = None) -> str:
        """Record a finished run that belongs to run ``parent_id`` (a search's trial):
        it ended now, after ``duration_s`` seconds. Returns its id."""
        if status not in RUN_STATUSES[1:]:
            raise StoreError(f"status == {status!r}, must be one of {list(RUN_STATUSES[1:])}")
        run_id = uuid.uuid4().hex[:12]
        now = self._now()
        with self._write() as conn:
            self._require_run(conn, parent_id)
            conn.execute(sa.insert(runs).values(
                id=run_id, project=project, status=status, parent_id=parent_id,
                started_at=now - dt.timedelta(seconds=max(0.0, duration_s)), ended_at=now,
                duration_s=max(0.0, duration_s), params=dict(params or {}),
                metrics=dict(metrics or {}), snapshots={}, artifacts={}, error=error,
                summary=dict(summary or {})))
        return run_id

    def child_runs(self, parent_ids: list[str]) -> dict[str, list[Row]]:
        """The child runs of each of ``parent_ids``, oldest first (the order recorded)."""
        out: dict[str, list[Row]] = {p: [] for p in parent_ids}
        if not parent_ids:
            return out
        query = sa.select(runs).where(runs.c.parent_id.in_(parent_ids))
        with self._read() as conn:
            for r in conn.execute(query).mappings():
                out[r["parent_id"]].append(dict(r))
        for rows in out.values():  # a search's trials: the same instant sorts by number
            rows.sort(key=lambda r: (r["ended_at"], (r["summary"] or {}).get("trial", 0)))
        return out

    def finish_run(self, run_id: str, status: str, *,
                   metrics: Mapping[str, Any] | None = None,
                   artifacts: Mapping[str, str] | None = None,
                   snapshots: Mapping[str, str] | None = None,
                   gate: Mapping[str, Any] | None = None, error: str | None = None,
                   summary: Mapping[str, Any] | None = None) -> Row:
        """End a running run with ``status`` 'succeeded' or 'failed'; returns the run.

        Given mappings replace the stored ones; ``duration_s`` is computed.
        """
        if status not in RUN_STATUSES[1:]:
            raise StoreError(f"status == {status!r}, must be one of {list(RUN_STATUSES[1:])}")
        with self._write() as conn:
            row = self._run_row(conn, run_id)
            if row["status"] != "running":
                raise StoreError(f"run {row['id']} already finished with status "
                                 f"{row['status']!r}; a finished run is not changed")
            now = self._now()
            values: dict[str, Any] = {
                "status": status, "ended_at": now, "error": error,
                "duration_s": max(0.0, (now - row["started_at"]).total_seconds())}
            for name, value in (("metrics", metrics), ("artifacts", artifacts),
                                ("snapshots", snapshots), ("gate", gate),
                                ("summary", summary)):
                if value is not None:
                    values[name] = dict(value)
            conn.execute(sa.update(runs).where(runs.c.id == row["id"]).values(**values))
            return self._run_row(conn, row["id"])

    def _run_row(self, conn: sa.Connection, id_or_prefix: str) -> Row:
        row = conn.execute(sa.select(runs).where(runs.c.id == id_or_prefix)).mappings().first()
        if row is not None:
            return dict(row)
        found: list[Row] = []
        if id_or_prefix and _HEX.match(id_or_prefix):
            found = [dict(r) for r in conn.execute(
                sa.select(runs).where(runs.c.id.startswith(id_or_prefix))
                .order_by(runs.c.started_at.desc()).limit(6)).mappings()]
        if len(found) == 1:
            return found[0]
        if found:
            ids = ", ".join(r["id"] for r in found[:5])
            raise NotFoundError(f"run prefix {id_or_prefix!r} is ambiguous: it matches "
                                f"{ids}{', ...' if len(found) > 5 else ''}; give more characters")
        latest = [r for (r,) in conn.execute(
            sa.select(runs.c.id).order_by(runs.c.started_at.desc()).limit(5))]
        hint = f"latest runs: {', '.join(latest)}" if latest else "there are no runs yet"
        raise NotFoundError(f"no run {id_or_prefix!r}; {hint}")

    def get_run(self, run_id: str) -> Row:
        """The run with this id, or with this unique id prefix."""
        with self._read() as conn:
            return self._run_row(conn, run_id)

    def list_runs(self, limit: int | None = None, *, project: str | None = None,
                  status: str | None = None) -> list[Row]:
        """Runs, newest first; child runs (a search's trials) are under theirs
        (:meth:`child_runs`), not here."""
        query = sa.select(runs).where(runs.c.parent_id.is_(None)) \
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        if project is not None:
            query = query.where(runs.c.project == project)
        if status is not None:
            query = query.where(runs.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- snapshots -----------------------------------------------------------------

    def put_snapshot(self, *, snapshot_id: str, source: str, path: str, rows: int | None,
                     columns: Any, data_digest: str | None,
                     profile_digest: str | None = None) -> Row:
        """Record a data snapshot; a snapshot already recorded is kept as it is.

        ``snapshot_id`` is the content hash of the raw source file, so recording the same
        file twice is a no-op. Returns the stored row.
        """
        stmt = self._insert(snapshots).values(
            id=snapshot_id, source=source, path=str(path), rows=rows, columns=columns,
            data_digest=data_digest, profile_digest=profile_digest, created_at=self._now(),
        ).on_conflict_do_nothing(index_elements=["id"])
        with self._write() as conn:
            conn.execute(stmt)
            return dict(conn.execute(sa.select(snapshots).where(
                snapshots.c.id == snapshot_id)).mappings().one())

    def get_snapshot(self, snapshot_id: str) -> Row:
        """The snapshot with this id (NotFoundError names the latest of its source)."""
        with self._read() as conn:
            row = conn.execute(sa.select(snapshots).where(
                snapshots.c.id == snapshot_id)).mappings().first()
            if row is None:
                latest = [f"{s} ({i[:12]})" for s, i in conn.execute(
                    sa.select(snapshots.c.source, snapshots.c.id)
                    .order_by(snapshots.c.created_at.desc()).limit(5))]
                hint = f"latest: {', '.join(latest)}" if latest else "there are none yet"
                raise NotFoundError(f"no snapshot {snapshot_id!r}; {hint}")
            return dict(row)

    def list_snapshots(self, source: str | None = None) -> list[Row]:
        """Snapshots, newest first, optionally of one source."""
        query = sa.select(snapshots).order_by(snapshots.c.created_at.desc())
        if source is not None:
            query = query.where(snapshots.c.source == source)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- stage cache ---------------------------------------------------------------

    def cache_get(self, stage: str, key: str) -> Row | None:
        """The cache entry ``{stage, key, outputs, run_id, created_at, duration_s}``,
        or None on a miss."""
        with self._read() as conn:
            row = conn.execute(sa.select(stage_cache).where(
                stage_cache.c.stage == stage, stage_cache.c.key == key)).mappings().first()
            return dict(row) if row is not None else None

    def cache_put(self, stage: str, key: str, outputs: Mapping[str, Any], *,
                  run_id: str | None = None, duration_s: float | None = None) -> None:
        """Record a stage's outputs (name -> digest or small value) under its cache key.

        An existing entry for (stage, key) is replaced.
        """
        values = {"outputs": dict(outputs), "run_id": run_id, "duration_s": duration_s,
                  "created_at": self._now()}
        stmt = self._insert(stage_cache).values(stage=stage, key=key, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["stage", "key"], set_=values)
        with self._write() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
            conn.execute(stmt)

    def cache_latest(self, stage: str) -> Row | None:
        """The newest cache entry of ``stage`` (to explain why it is stale), or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(stage_cache).where(stage_cache.c.stage == stage)
                               .order_by(stage_cache.c.created_at.desc()).limit(1)
                               ).mappings().first()
            return dict(row) if row is not None else None

    # -- audit log -----------------------------------------------------------------

    def audit(self, action: str, object: str, *, actor: str,
              detail: Mapping[str, Any] | None = None, reason: str | None = None) -> int:
        """Record an audited event (who did what to which object, and why); returns its id."""
        with self._write() as conn:
            return self._audit(conn, at=self._now(), actor=actor, action=action,
                               object=object, detail=detail, reason=reason)

    def list_audit(self, limit: int | None = None, *, object: str | None = None,
                   ) -> list[Row]:
        """Audit events, newest first; ``object`` filters to one object (e.g. 'm@prod')."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc())
        if object is not None:
            query = query.where(audit_events.c.object == object)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
