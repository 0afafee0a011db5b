"""Deployments: each named deployment's current state, and every change to it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09

Written out in full (not imported from ``cd4ml.store.tables``) so this revision never
changes when the tables module does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``deployments`` and ``deployment_events``."""
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("from_state", sa.JSON()),
        sa.Column("to_state", sa.JSON(), nullable=False),
        sa.UniqueConstraint("name", "revision", name="uq_deployment_events_revision"),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("deployment_events")
    op.drop_table("deployments")
