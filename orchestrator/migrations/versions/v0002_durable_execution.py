"""Durable execution: the outbox and lease columns of task runs, and the events table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Batch mode, because SQLite alters tables only in a few ways; where it can (as for these), it still ALTERs.
    with op.batch_alter_table("task_runs") as task_runs:
        task_runs.add_column(sa.Column("dispatch_after", UTC_DATETIME, nullable=True))
        task_runs.add_column(sa.Column("sent_at", UTC_DATETIME, nullable=True))
        task_runs.add_column(sa.Column("lease_expires_at", UTC_DATETIME, nullable=True))
        # A server default, so the rows already there get one.
        task_runs.add_column(sa.Column("worker", sa.String(200), nullable=False, server_default=""))
        task_runs.create_index("ix_task_runs_status", ["status"])
    # `metadata.create_all` of the commit that added these may have made the events table already: the same one.
    if sa.inspect(op.get_bind()).has_table("events"):
        return
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_run_id", sa.String(36), nullable=True),
        sa.Column("stage", sa.String(200), nullable=True),
        sa.Column("task", sa.String(200), nullable=True),
        sa.Column("previous", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_index("ix_events_execution", "events", ["execution_id", "id"])


def downgrade() -> None:
    raise NotImplementedError("Rollway migrates forward only: restore a backup to go back")
