"""Security: API tokens, project variables, webhook triggers and their deliveries, sealed task input, the audit trail,
restricted endpoints and the user operations that approve their use or answer a UserOperation task.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("task_runs") as task_runs:
        task_runs.add_column(sa.Column("sealed_input", sa.Text(), nullable=True))
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("last_used_at", UTC_DATETIME, nullable=True),
    )
    op.create_table(
        "variables",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_variables_project_name"),
    )
    op.create_table(
        "triggers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("input", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    )
    op.create_table(
        "trigger_deliveries",
        sa.Column("trigger_id", sa.String(36), sa.ForeignKey("triggers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("delivery", sa.String(200), primary_key=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
    )

    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("project", sa.String(200), nullable=True),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    op.create_index("ix_audit_project", "audit", ["project", "id"])

    # A plain ALTER on SQLite too (batch mode would copy executions, and dropping the old copy cascades to task_runs).
    for table, name in (("executions", "requested_by_admin"), ("endpoints", "restricted")):
        op.add_column(table, sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "user_operations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_run_id", sa.String(36), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("responded_by", sa.String(200), nullable=True),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("responded_at", UTC_DATETIME, nullable=True),
        sa.Column("approvers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("approver_groups", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("expires_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_user_operations_status", "user_operations", ["status", "project"])
    op.create_index("ix_user_operations_execution", "user_operations", ["execution_id"])


def downgrade() -> None:
    raise NotImplementedError("Rollway migrates forward only: restore a backup to go back")
