"""The schema as `metadata.create_all` made it before migrations: pipelines, executions, task runs, endpoints.

Revision ID: 0001
Revises: (none)

Written out here rather than imported from `orchestrator.schema`: a revision must keep describing the
schema as it was, whatever `schema.py` becomes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# `UTCDateTime` and `Json` of schema.py as their database types.
UTC_DATETIME = sa.DateTime(timezone=True)
JSON: Any = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("document_hash", sa.String(64), nullable=False),
        sa.Column("rollback_targets", JSON, nullable=False),
        sa.Column("endpoint_names", JSON, nullable=False),
        sa.Column("execution_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_pipelines_project_name"),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("pipeline_id", sa.String(36), sa.ForeignKey("pipelines.id", ondelete="SET NULL"), nullable=True),
        sa.Column("pipeline_name", sa.String(200), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        sa.Column("input", JSON, nullable=False),
        sa.Column("output", JSON, nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("document_hash", sa.String(64), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("rollback_of", sa.String(36), sa.ForeignKey("executions.id", ondelete="SET NULL"), nullable=True),
        sa.Column("rollback_execution_id", sa.String(36), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=True),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_executions_pipeline_status", "executions", ["pipeline_id", "status"])
    op.create_index("ix_executions_created", "executions", ["created_at"])
    op.create_index("ix_executions_rollback_of", "executions", ["rollback_of"])
    op.create_table(
        "task_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("input", JSON, nullable=True),
        sa.Column("output", JSON, nullable=True),
        sa.Column("bindings", JSON, nullable=False),
        sa.Column("endpoints", JSON, nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=True),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_task_runs_execution", "task_runs", ["execution_id", "position"])
    op.create_table(
        "endpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("insecure", sa.Boolean(), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_endpoints_project_name"),
    )


def downgrade() -> None:
    raise NotImplementedError("Rollway migrates forward only: restore a backup to go back")
