"""The database schema (SQLAlchemy Core), the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json: Any = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("document", Json, nullable=False),
    Column("document_hash", String(64), nullable=False),
    # Rollback pipelines this one links to, so deleting a linked pipeline can be refused cheaply.
    Column("rollback_targets", Json, nullable=False),
    # Endpoints its tasks name, so deleting one that is in use can be refused.
    Column("endpoint_names", Json, nullable=False),
    Column("execution_count", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("project", "name", name="uq_pipelines_project_name"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pipeline_id", String(36), ForeignKey("pipelines.id", ondelete="SET NULL"), nullable=True),
    Column("pipeline_name", String(200), nullable=False),
    Column("project", String(200), nullable=False),
    Column("index", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=False, default=""),
    Column("comments", Text, nullable=False, default=""),
    Column("input", Json, nullable=False),
    Column("output", Json, nullable=False),
    # The pipeline as it was when the execution started: editing a pipeline never changes a running one.
    Column("document", Json, nullable=False),
    Column("document_hash", String(64), nullable=False),
    # The execution this one is a child of, and how (`execution.Relation`: rollback, nested, manual_rollback);
    # both NULL for a top-level execution.
    Column("parent_id", String(36), ForeignKey("executions.id", ondelete="SET NULL"), nullable=True),
    Column("relation", String(32), nullable=True),
    # Why it is (or was last) rolling back, e.g. the task that failed: its ROLLBACK_* message starts with it.
    Column("cause", Text, nullable=False, default="", server_default=""),
    Column("requested_by", String(200), nullable=False, default=""),
    # Whether whoever started it was an admin of its project: a non-admin's run waits for an admin's approval
    # before a task uses a RESTRICTED variable or a restricted endpoint (`useroperations.py`).
    Column("requested_by_admin", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_executions_pipeline_status", "pipeline_id", "status"),
    Index("ix_executions_created", "created_at"),
    Index("ix_executions_parent", "parent_id"),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("execution_id", String(36), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("stage", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("position", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=False, default=""),
    Column("input", Json, nullable=True),
    Column("output", Json, nullable=True),
    # Values of the pipeline bindings the task's expressions read, taken when it was queued.
    Column("bindings", Json, nullable=False),
    # The task's endpoints by role, as endpoint ids, resolved when it was queued.
    Column("endpoints", Json, nullable=False),
    Column("state", Json, nullable=False),
    # The bound input in full, sealed by the vault, when `input` had secrets masked out of it (NULL otherwise):
    # what the worker runs with. `input` is what the API shows.
    Column("sealed_input", Text, nullable=True),
    Column("attempt", Integer, nullable=False, default=0),
    # The outbox: a QUEUED run is due to be sent at `dispatch_after`; `sent_at` is when its current attempt
    # was last handed to the broker (NULL: not yet). The sweep sends what is due and re-sends what was lost.
    Column("dispatch_after", UTCDateTime, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    # The lease of a RUNNING run: its worker renews it while the executor runs; expired, the worker was lost.
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("worker", String(200), nullable=False, default=""),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_task_runs_execution", "execution_id", "position"),
    Index("ix_task_runs_status", "status"),
)

# Every status change of an execution or a task run: its history, and the feed notifications and metrics read.
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("execution_id", String(36), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("task_run_id", String(36), nullable=True),
    Column("stage", String(200), nullable=True),
    Column("task", String(200), nullable=True),
    Column("previous", String(32), nullable=True),
    Column("status", String(32), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("actor", String(200), nullable=False, default=""),
    Index("ix_events_execution", "execution_id", "id"),
)


endpoints = Table(
    "endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("insecure", Boolean, nullable=False),
    # Only an admin may mark it; a task of a non-admin's run that uses it waits for an admin's approval.
    Column("restricted", Boolean, nullable=False, default=False, server_default=false()),
    # Token, CA data and kubeconfig, sealed by the vault; never returned by the API.
    Column("credentials", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Its last probe (`preflight.py`): when it was asked whether it answers with its credentials, and what it said.
    # NULL until first probed, and again once its URL or credentials change. A release whose rollback uses it
    # starts only on a recent answer.
    Column("probed_at", UTCDateTime, nullable=True),
    Column("probe_ok", Boolean, nullable=True),
    Column("probe_message", Text, nullable=True),
    UniqueConstraint("project", "name", name="uq_endpoints_project_name"),
)


# API tokens: only a hash is kept (tokens are random, so SHA-256 is enough); the token itself is shown once.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("project", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
)

# Project variables for `${var.NAME}`: REGULAR values in the clear, SECRET and RESTRICTED sealed by the vault.
variables = Table(
    "variables",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
    Column("value", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("project", "name", name="uq_variables_project_name"),
)

# Webhook triggers: `POST /api/triggers/<name>` signed with the sealed secret starts `pipeline` with `input`.
triggers = Table(
    "triggers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("project", String(200), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("secret", Text, nullable=False),
    Column("input", Json, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Deliveries a trigger has seen (`X-GitHub-Delivery`): a repeated one starts nothing new.
trigger_deliveries = Table(
    "trigger_deliveries",
    metadata,
    Column("trigger_id", String(36), ForeignKey("triggers.id", ondelete="CASCADE"), primary_key=True),
    Column("delivery", String(200), primary_key=True),
    Column("execution_id", String(36), nullable=True),
    Column("at", UTCDateTime, nullable=False),
)


# The audit trail: every request that asked to change something, who asked, in which project, and the answer.
audit = Table(
    "audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("project", String(200), nullable=True),
    Column("method", String(10), nullable=False),
    Column("path", Text, nullable=False),
    Column("route", String(100), nullable=False),
    Column("status", Integer, nullable=False),
    # What the answer alone does not say, written by the handler: a trigger forced past its rollback check, and why.
    Column("note", Text, nullable=True),
    Index("ix_audit_project", "project", "id"),
)

# What a run waits for a person to answer: an admin's approval of a restricted variable or endpoint (RESTRICTED),
# later the approvers of a UserOperation task (APPROVAL). `task_run_id` is the run that waits.
user_operations = Table(
    "user_operations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("execution_id", String(36), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("task_run_id", String(36), nullable=False),
    Column("project", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("responded_by", String(200), nullable=True),
    Column("comments", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("responded_at", UTCDateTime, nullable=True),
    # An APPROVAL's: who may answer it (token names), its groups (informational), and when it expires.
    Column("approvers", Json, nullable=True),
    Column("approver_groups", Json, nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("expires_at", UTCDateTime, nullable=True),
    Index("ix_user_operations_status", "status", "project"),
    Index("ix_user_operations_execution", "execution_id"),
)

# The notifications an execution's events owe (the pipeline's `notifications:`), one row each, written in the
# transaction of the event (an outbox) and sent after it commits: PENDING until SENT, or FAILED once its attempts
# are spent. `target` is the notification's position in its pipeline's `webhook` or `email` list; `stage`, `task`
# and `reason` name the failed task of a failure event. `sent_at` is when it was last handed to the broker (the
# sweep hands it again when a worker never took it), `next_attempt_at` when it is next due.
notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("execution_id", String(36), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("type", String(16), nullable=False),
    Column("target", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("stage", String(200), nullable=False),
    Column("task", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("response_code", Integer, nullable=True),
    Column("error", Text, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Index("ix_notifications_execution", "execution_id", "created_at"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
)


def now() -> datetime:
    """The current time as the store records it."""
    return datetime.now(UTC)
