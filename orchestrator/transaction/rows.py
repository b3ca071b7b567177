"""How the store's rows read as Rollway's records: the columns read, the status sets as SQL `IN` lists, and
the functions that map a row to an `Execution`, `Child`, `TaskRun`, `Event` or `PipelineRecord`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from orchestrator.execution import ROLLS_BACK, Child, Event, Execution, PipelineRecord, Relation, TaskRun
from orchestrator.schema import executions, task_runs
from orchestrator.snapshots import DocumentCache
from orchestrator.status import ExecutionStatus, RunStatus

EXECUTION_COLUMNS = [column for column in executions.c if column.name != "document"]
CHILD_FIELDS = ("id", "parent_id", "pipeline_name", "index", "relation", "status", "status_message", "created_at")
CHILD_COLUMNS = [executions.c[name] for name in (*CHILD_FIELDS, "started_at")]
SUMMARY_COLUMNS = [
    task_runs.c[name] for name in ("id", "stage", "name", "status", "status_message", "output", "started_at")
]
# Execution statuses, as lists for SQL `IN`: named once in status.py.
RUNS_TASKS = sorted(status.value for status in ExecutionStatus if status.runs_tasks)
HOLDS_SLOT = sorted(status.value for status in ExecutionStatus if status.holds_slot)
IN_PROGRESS = sorted(status.value for status in ExecutionStatus if status.in_progress)
OPEN_RUNS = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)
TERMINAL = sorted(status.value for status in ExecutionStatus if status.is_terminal)
# Relations whose children roll their parent back, as a list for SQL `IN`.
ROLLING_BACK_RELATIONS = sorted(relation.value for relation in ROLLS_BACK)
EVENT_FIELDS = ("at", "execution_id", "task_run_id", "stage", "task", "previous", "status", "message", "actor")


def new_id() -> str:
    return str(uuid.uuid4())


def execution_from_row(row: Row[Any]) -> Execution:
    return Execution(
        id=row.id,
        pipeline_id=row.pipeline_id,
        pipeline_name=row.pipeline_name,
        project=row.project,
        index=row._mapping["index"],
        status=ExecutionStatus(row.status),
        status_message=row.status_message,
        comments=row.comments,
        input=row.input,
        output=row.output,
        parent_id=row.parent_id,
        relation=None if row.relation is None else Relation(row.relation),
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        requested_by_admin=bool(row.requested_by_admin),
        cause=row.cause or "",
    )


def child_from_row(row: Row[Any]) -> Child:
    return Child(
        id=row.id,
        parent_id=row.parent_id,
        pipeline_name=row.pipeline_name,
        index=row._mapping["index"],
        relation=Relation(row.relation),
        status=ExecutionStatus(row.status),
        status_message=row.status_message,
        created_at=row.created_at,
        started_at=row.started_at,
    )


def task_run_from_row(row: Row[Any]) -> TaskRun:
    return TaskRun(
        id=row.id,
        execution_id=row.execution_id,
        stage=row.stage,
        name=row.name,
        type=row.type,
        status=RunStatus(row.status),
        status_message=row.status_message,
        input=row.input,
        output=row.output,
        bindings=row.bindings,
        endpoints=row.endpoints,
        state=row.state,
        attempt=row.attempt,
        started_at=row.started_at,
        finished_at=row.finished_at,
        dispatch_after=row.dispatch_after,
        sent_at=row.sent_at,
        lease_expires_at=row.lease_expires_at,
        worker=row.worker,
        sealed_input=row.sealed_input,
    )


def event_from_row(row: Row[Any]) -> Event:
    return Event(**{name: getattr(row, name) for name in EVENT_FIELDS})


def run_event(run: TaskRun, previous: RunStatus | None, actor: str, stamp: datetime) -> dict[str, Any]:
    """The event row of a task run that has just moved from `previous` to its status."""
    return {
        "at": stamp,
        "execution_id": run.execution_id,
        "task_run_id": run.id,
        "stage": run.stage,
        "task": run.name,
        "previous": None if previous is None else previous.value,
        "status": run.status.value,
        "message": run.status_message,
        "actor": actor,
    }


def pipeline_from_row(row: Row[Any], documents: DocumentCache) -> PipelineRecord:
    pipeline = documents.pipeline(row.document_hash, lambda: row.document)
    return PipelineRecord(id=row.id, pipeline=pipeline, created_at=row.created_at, updated_at=row.updated_at)
