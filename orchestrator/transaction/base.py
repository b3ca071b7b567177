"""What every part of a `Transaction` shares: its connection, its document cache, its reads, and the bookkeeping
of the events and notifications its changes owe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from orchestrator import notices
from orchestrator.errors import NotFound
from orchestrator.execution import Event, Execution, ExecutionState, PipelineRecord, RunSummary, TaskRun
from orchestrator.schema import endpoints, events, executions, pipelines, task_runs
from orchestrator.snapshots import DocumentCache
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.transaction.rows import (
    event_from_row,
    execution_from_row,
    pipeline_from_row,
    run_event,
    task_run_from_row,
)
from orchestrator.transaction.statements import _EXECUTION, _LOCK_EXECUTION, _SUMMARIES, RunChange


class TransactionBase:
    """One connection inside one transaction: its reads, and the events and notifications its changes owe.

    The moves of executions and task runs and the sweep's queries are built on it (see `Transaction`).
    """

    def __init__(self, conn: Connection, documents: DocumentCache) -> None:
        self.conn = conn
        self.documents = documents
        self.pending_events: list[dict[str, Any]] = []
        # Notifications the events of this transaction owe (see notices.py): handed on once it commits.
        self.notices: list[str] = []

    def flush_events(self) -> None:
        """Write the events of the changes made so far."""
        if self.pending_events:
            self.conn.execute(insert(events), self.pending_events)
            self.pending_events = []

    def _move_runs(self, change: RunChange, values: dict[str, Any], actor: str) -> list[TaskRun]:
        """Make a task-run change and record its events; the runs it moved."""
        values = values | {"actor": actor}
        if self.conn.dialect.name == "postgresql":
            self.flush_events()  # an execution's change made before this one stays before it in the history
            return [task_run_from_row(row) for row in self.conn.execute(change.logged, values)]
        moved = [task_run_from_row(row) for row in self.conn.execute(change.statement, values)]
        self.pending_events += [run_event(run, change.old, actor, values["now"]) for run in moved]
        return moved

    # -- reads

    def _execution_row(self, execution_id: str, lock: bool) -> Row[Any]:
        row = self.conn.execute(_LOCK_EXECUTION if lock else _EXECUTION, {"id": execution_id}).first()
        if row is None:
            raise NotFound(f"there is no execution with id '{execution_id}'")
        return row

    def execution(self, execution_id: str, lock: bool = False) -> Execution:
        """An execution; with `lock`, its row stays locked until the transaction ends."""
        return execution_from_row(self._execution_row(execution_id, lock))

    def task_runs(self, execution_id: str) -> list[TaskRun]:
        rows = self.conn.execute(
            select(task_runs).where(task_runs.c.execution_id == execution_id).order_by(task_runs.c.position)
        )
        return [task_run_from_row(row) for row in rows]

    def state(self, execution_id: str, lock: bool = False) -> ExecutionState:
        """An execution with its pipeline snapshot and a summary of every task run."""
        row = self._execution_row(execution_id, lock)
        rows = self.conn.execute(_SUMMARIES, {"execution_id": execution_id})
        runs = [
            RunSummary(
                row.id, row.stage, row.name, RunStatus(row.status), row.status_message, row.output, row.started_at
            )
            for row in rows
        ]
        pipeline = self.documents.pipeline(row.document_hash, lambda: self._document(execution_id))
        return ExecutionState(execution_from_row(row), pipeline, {run.key: run for run in runs})

    def _document(self, execution_id: str) -> object:
        return self.conn.execute(select(executions.c.document).where(executions.c.id == execution_id)).scalar_one()

    def find_pipeline(self, project: str, name: str) -> PipelineRecord | None:
        row = self.conn.execute(
            select(pipelines).where(pipelines.c.project == project, pipelines.c.name == name)
        ).first()
        return None if row is None else pipeline_from_row(row, self.documents)

    def endpoint_id(self, project: str, name: str) -> str | None:
        """The id of a project's endpoint of that name, if there is one."""
        return self.conn.execute(
            select(endpoints.c.id).where(endpoints.c.project == project, endpoints.c.name == name)
        ).scalar_one_or_none()

    def endpoint_ids(self, project: str, kind: str) -> list[str]:
        """The ids of a project's endpoints of type `kind`, by name."""
        query = select(endpoints.c.id).where(endpoints.c.project == project, endpoints.c.type == kind)
        return list(self.conn.execute(query.order_by(endpoints.c.name)).scalars())

    def task_run(self, task_run_id: str) -> TaskRun:
        row = self.conn.execute(select(task_runs).where(task_runs.c.id == task_run_id)).first()
        if row is None:
            raise NotFound(f"there is no task run with id '{task_run_id}'")
        return task_run_from_row(row)

    def _execution_event(
        self,
        execution_id: str,
        *,
        previous: ExecutionStatus | None,
        status: ExecutionStatus,
        message: str,
        actor: str,
        stamp: datetime,
    ) -> None:
        self.pending_events.append(
            {
                "at": stamp,
                "execution_id": execution_id,
                "task_run_id": None,
                "stage": None,
                "task": None,
                "previous": None if previous is None else previous.value,
                "status": status.value,
                "message": message,
                "actor": actor,
            }
        )
        self._notify(execution_id, previous, status, message, stamp)

    def _notify(
        self,
        execution_id: str,
        previous: ExecutionStatus | None,
        status: ExecutionStatus,
        message: str,
        stamp: datetime,
    ) -> None:
        """Record the notifications an execution event owes, in this transaction (the outbox of `notices.py`)."""
        before = None if previous is None else previous.value
        self.notices += notices.record(
            self.conn, self.documents, execution_id, previous=before, status=status.value, message=message, stamp=stamp
        )

    def events(self, execution_id: str) -> list[Event]:
        """An execution's history, oldest first."""
        rows = self.conn.execute(select(events).where(events.c.execution_id == execution_id).order_by(events.c.id))
        return [event_from_row(row) for row in rows]
