"""Alerts: one row per episode of a rule on a subject, and their webhook deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Written out in full (not imported from ``cd4ml.store.tables``) so this revision never
changes when the tables module does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create ``alerts`` and ``alert_deliveries``."""
    op.create_table(
        "alerts",
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
        _ts("pending_since"),
        _ts("fired_at"),
        _ts("resolved_at"),
        _ts("updated_at", nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("detail", sa.JSON()),
        sa.UniqueConstraint("rule", "subject", "episode", name="uq_alerts_episode"),
    )
    op.create_index("ix_alerts_subject", "alerts", ["subject"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("transition", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text()),
        _ts("at", nullable=False),
    )
    op.create_index("ix_alert_deliveries_status", "alert_deliveries", ["status"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("alert_deliveries")
    op.drop_table("alerts")
