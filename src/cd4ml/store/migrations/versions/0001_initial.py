"""Initial schema: runs, snapshots, stage cache, model registry, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full (not imported from ``cd4ml.store.tables``) so this revision never
changes when the tables module does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("started_at", nullable=False),
        _ts("ended_at"),
        sa.Column("duration_s", sa.Float()),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean()),
        sa.Column("config_hash", sa.String(64)),
        sa.Column("params", sa.JSON()),
        sa.Column("metrics", sa.JSON()),
        sa.Column("snapshots", sa.JSON()),
        sa.Column("artifacts", sa.JSON()),
        sa.Column("gate", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("summary", sa.JSON()),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger()),
        sa.Column("columns", sa.JSON()),
        sa.Column("data_digest", sa.String(64)),
        sa.Column("profile_digest", sa.String(64)),
        _ts("created_at", nullable=False),
    )
    op.create_table(
        "stage_cache",
        sa.Column("stage", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
        _ts("created_at", nullable=False),
        sa.Column("duration_s", sa.Float()),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("last_version", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("model_name", sa.String(200), sa.ForeignKey("models.name"),
                  primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_type", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON()),
        sa.Column("gate", sa.JSON()),
        sa.Column("lineage", sa.JSON()),
        _ts("created_at", nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["model_name", "version"],
                                ["model_versions.model_name", "model_versions.version"],
                                name="fk_aliases_version"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts("at", nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object", sa.String(400), nullable=False),
        sa.Column("detail", sa.JSON()),
        sa.Column("reason", sa.Text()),
    )


def downgrade() -> None:
    """Drop every table."""
    for name in ("audit_events", "aliases", "model_versions", "models", "stage_cache",
                 "snapshots", "runs"):
        op.drop_table(name)
