"""Child runs: ``runs.parent_id`` names the run a run belongs to (a search's trials).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Written out in full (not imported from ``cd4ml.store.tables``) so this revision never
changes when the tables module does. A database of an older cd4ml is upgraded in place:
its runs keep their rows, with no parent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``runs.parent_id`` and its index."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32)))
    op.create_index("ix_runs_parent_id", "runs", ["parent_id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_runs_parent_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_id")
