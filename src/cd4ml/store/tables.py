"""The metadata tables as SQLAlchemy Core objects, and the column types they share.

This is the schema the code reads and writes; ``migrations/versions`` creates it. A test
checks that the two agree. Every datetime is stored in UTC and read back timezone-aware;
every JSON column stores ``None`` as SQL ``NULL`` and non-finite floats as ``null`` (so
PostgreSQL accepts them).

>>> sorted(metadata_obj.tables)  # doctest: +NORMALIZE_WHITESPACE
['alert_deliveries', 'alerts', 'aliases', 'audit_events', 'deployment_events', 'deployments',
 'model_versions', 'models', 'runs', 'snapshots', 'stage_cache']
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from cd4ml.store._json import to_jsonable

__all__ = [
    "metadata_obj", "runs", "snapshots", "stage_cache", "models", "model_versions",
    "aliases", "audit_events", "alerts", "alert_deliveries", "deployments",
    "deployment_events", "UTCDateTime", "JSONValue",
    "RUN_STATUSES", "VERSION_KINDS", "ALERT_STATES", "DELIVERY_STATUSES",
]

RUN_STATUSES = ("running", "succeeded", "failed")
VERSION_KINDS = ("candidate", "baseline")
#: an alert's states, the most urgent first (``cd4ml.monitoring.alerts``)
ALERT_STATES = ("firing", "pending", "resolved", "inactive")
DELIVERY_STATUSES = ("delivered", "dead")


class JSONValue(sa.types.TypeDecorator[Any]):
    """JSON that accepts numpy scalars and stores NaN/inf as null (PostgreSQL rejects NaN)."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else to_jsonable(value)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A datetime stored in UTC and returned timezone-aware in UTC.

    Naive datetimes are refused when writing: they are ambiguous.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect,
                           ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(dt.UTC)
        # SQLite has no time zones: store naive UTC text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect,
                             ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata_obj = sa.MetaData()

runs = sa.Table(
    "runs", metadata_obj,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime()),
    sa.Column("duration_s", sa.Float()),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("git_dirty", sa.Boolean()),
    sa.Column("config_hash", sa.String(64)),
    sa.Column("params", JSONValue()),
    sa.Column("metrics", JSONValue()),
    sa.Column("snapshots", JSONValue()),
    sa.Column("artifacts", JSONValue()),
    sa.Column("gate", JSONValue()),
    sa.Column("error", sa.Text()),
    sa.Column("summary", JSONValue()),
    # a child run (a search's trial) names its run; top-level runs have none
    sa.Column("parent_id", sa.String(32)),
    sa.Index("ix_runs_started_at", "started_at"),
    sa.Index("ix_runs_parent_id", "parent_id"),
)

snapshots = sa.Table(
    "snapshots", metadata_obj,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("rows", sa.BigInteger()),
    sa.Column("columns", JSONValue()),
    sa.Column("data_digest", sa.String(64)),
    sa.Column("profile_digest", sa.String(64)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

stage_cache = sa.Table(
    "stage_cache", metadata_obj,
    sa.Column("stage", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("outputs", JSONValue(), nullable=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("duration_s", sa.Float()),
)

models = sa.Table(
    "models", metadata_obj,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("last_version", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

model_versions = sa.Table(
    "model_versions", metadata_obj,
    sa.Column("model_name", sa.String(200), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model_type", sa.String(64), nullable=False),
    sa.Column("metrics", JSONValue()),
    sa.Column("gate", JSONValue()),
    sa.Column("lineage", JSONValue()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)  # the primary key (model_name, version) is the unique constraint

aliases = sa.Table(
    "aliases", metadata_obj,
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["model_name", "version"],
                            ["model_versions.model_name", "model_versions.version"],
                            name="fk_aliases_version"),
)

audit_events = sa.Table(
    "audit_events", metadata_obj,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object", sa.String(400), nullable=False),
    sa.Column("detail", JSONValue()),
    sa.Column("reason", sa.Text()),
)

# One row per episode of an alert rule on a subject (model@version): the row is updated
# as the episode moves inactive -> pending -> firing -> resolved; a resolved alert that
# fires again is the next episode, a new row. (rule, subject, episode) is unique, which
# is what makes two evaluators starting the same episode at once conflict.
alerts = sa.Table(
    "alerts", metadata_obj,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(400), nullable=False),
    sa.Column("episode", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("value", sa.Float()),
    sa.Column("threshold", sa.Float(), nullable=False),
    sa.Column("resolve", sa.Float(), nullable=False),
    sa.Column("rows", sa.BigInteger(), nullable=False),
    sa.Column("insufficient", sa.Boolean(), nullable=False),
    sa.Column("pending_since", UTCDateTime()),
    sa.Column("fired_at", UTCDateTime()),
    sa.Column("resolved_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("message", sa.Text()),
    sa.Column("detail", JSONValue()),
    sa.UniqueConstraint("rule", "subject", "episode", name="uq_alerts_episode"),
    sa.Index("ix_alerts_subject", "subject"),
)

# One row per transition sent to the webhook: delivered (after `attempts` tries), or
# dead when every retry failed (a dead letter, counted).
alert_deliveries = sa.Table(
    "alert_deliveries", metadata_obj,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("transition", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_error", sa.Text()),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_alert_deliveries_status", "status"),
)

# One row per named deployment: its current state (cd4ml.serving.deployment's
# DeploymentState as a dict) and revision, the number every write compares and sets.
deployments = sa.Table(
    "deployments", metadata_obj,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("state", JSONValue(), nullable=False),
    sa.Column("revision", sa.Integer(), nullable=False),
)

# One row per change of a deployment (its whole history, what rollback restores from):
# (name, revision) is unique, so two writers of the same revision cannot both land.
deployment_events = sa.Table(
    "deployment_events", metadata_obj,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text()),
    sa.Column("from_state", JSONValue()),
    sa.Column("to_state", JSONValue(), nullable=False),
    sa.UniqueConstraint("name", "revision", name="uq_deployment_events_revision"),
)
