"""What the sweep (and the outbox relay) looks for inside a transaction: expired leases, runs due to send,
queued executions' pipelines, and executions whose follow-up step was lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from orchestrator.execution import Relation, TaskRun
from orchestrator.outbox import run_label
from orchestrator.schema import executions, task_runs
from orchestrator.status import ExecutionStatus
from orchestrator.tasktypes import PIPELINE
from orchestrator.transaction.base import TransactionBase
from orchestrator.transaction.rows import OPEN_RUNS, ROLLING_BACK_RELATIONS, RUNS_TASKS, TERMINAL, task_run_from_row
from orchestrator.transaction.statements import _R, _THIS_ATTEMPT


class SweepQueries(TransactionBase):
    """The sweep's queries, and the marks it leaves on the runs it sends."""

    def expired_leases(self, stamp: datetime, limit: int) -> list[TaskRun]:
        """Running task runs whose worker stopped renewing their lease before `stamp`."""
        expired = (task_runs.c.lease_expires_at < stamp) | task_runs.c.lease_expires_at.is_(None)
        query = select(task_runs).where(task_runs.c.status == _R.RUNNING, expired)
        return [task_run_from_row(row) for row in self.conn.execute(query.limit(limit))]

    def due_to_send(self, horizon: datetime, resend_before: datetime, limit: int) -> list[tuple[TaskRun, bool, str]]:
        """Queued runs of running executions to send: never sent and due before `horizon`, or sent before
        `resend_before` and still not claimed; each with whether its execution is a rollback, and its label."""
        query = (
            select(
                task_runs,
                executions.c.relation.in_(ROLLING_BACK_RELATIONS).label("of_rollback"),
                executions.c.pipeline_name,
                executions.c.index.label("execution_index"),
            )
            .join(executions, executions.c.id == task_runs.c.execution_id)
            .where(
                task_runs.c.status == _R.QUEUED,
                executions.c.status.in_(RUNS_TASKS),
                ((task_runs.c.sent_at.is_(None)) & (task_runs.c.dispatch_after <= horizon))
                # Sent, due, and a lease later still not claimed (a countdown still running is not lost).
                | ((task_runs.c.sent_at < resend_before) & (task_runs.c.dispatch_after < resend_before)),
            )
            .order_by(task_runs.c.dispatch_after)
            .limit(limit)
        )
        return [
            (
                run := task_run_from_row(row),
                bool(row.of_rollback),
                run_label(row.pipeline_name, row.execution_index, run.stage, run.name),
            )
            for row in self.conn.execute(query)
        ]

    def resend_queued(self, execution_id: str, horizon: datetime, stamp: datetime) -> list[TaskRun]:
        """Mark an execution's QUEUED runs due before `horizon` as sent at `stamp`; the runs to send (a resumed
        execution's, whose messages were dropped while it was paused). Later ones the sweep sends when due."""
        statement = (
            update(task_runs)
            .where(
                task_runs.c.execution_id == execution_id,
                task_runs.c.status == _R.QUEUED,
                task_runs.c.dispatch_after <= horizon,
            )
            .values(sent_at=stamp)
            .returning(*task_runs.c)
        )
        return [task_run_from_row(row) for row in self.conn.execute(statement)]

    def mark_sent(self, attempts: Iterable[tuple[str, int]], stamp: datetime | None) -> None:
        """Record that these attempts (task run id, attempt) were handed to the broker at `stamp` (None: the
        send failed, so the sweep sends them as soon as the broker is back)."""
        statement = (
            update(task_runs).where(*_THIS_ATTEMPT, task_runs.c.status == _R.QUEUED).values(sent_at=bindparam("stamp"))
        )
        rows = [{"run_id": run_id, "at_attempt": attempt, "stamp": stamp} for run_id, attempt in attempts]
        if rows:
            self.conn.execute(statement, rows)

    def pipelines_with_queued_executions(self) -> list[str]:
        rows = self.conn.execute(
            select(executions.c.pipeline_id)
            .where(executions.c.status == ExecutionStatus.QUEUED, executions.c.pipeline_id.is_not(None))
            .distinct()
        )
        return [str(row.pipeline_id) for row in rows]

    def unsettled_parents(self, limit: int) -> list[str]:
        """ROLLING_BACK executions none of whose rollbacks runs, though one has ended: the step after that end
        (settle the parent, or start its next manual rollback) was lost."""
        child = executions.alias("child")

        def rollbacks(*where: Any) -> Any:
            return (
                select(child.c.id)
                .where(child.c.parent_id == executions.c.id, child.c.relation.in_(ROLLING_BACK_RELATIONS), *where)
                .exists()
            )

        running = rollbacks(child.c.status.not_in([*TERMINAL, ExecutionStatus.NOT_STARTED.value]))
        rows = self.conn.execute(
            select(executions.c.id)
            .where(
                executions.c.status == ExecutionStatus.ROLLING_BACK,
                rollbacks(child.c.status.in_(TERMINAL)),
                ~running,
            )
            .limit(limit)
        )
        return [row.id for row in rows]

    def unsettled_nested(self, limit: int) -> list[str]:
        """Nested executions that ended while a Pipeline task run of their parent still waits for one: the end's
        follow-up (`Engine.finished`) was lost. Each parent's waiting runs are matched to the child they name."""
        rows = self.conn.execute(
            select(executions.c.id, task_runs.c.output)
            .join(task_runs, task_runs.c.execution_id == executions.c.parent_id)
            .where(
                executions.c.relation == Relation.NESTED.value,
                executions.c.status.in_(TERMINAL),
                task_runs.c.status == _R.WAITING,
                task_runs.c.type == PIPELINE,
            )
            .limit(limit)
        )
        return [row.id for row in rows if (row.output or {}).get("executionId") == row.id]

    def stalled(self, before: datetime, limit: int) -> list[str]:
        """Executions running tasks with none of them open, unchanged since `before`: a step's follow-up was lost."""
        open_run = (
            select(task_runs.c.id)
            .where(task_runs.c.execution_id == executions.c.id, task_runs.c.status.in_(OPEN_RUNS))
            .exists()
        )
        rows = self.conn.execute(
            select(executions.c.id)
            .where(executions.c.status.in_(RUNS_TASKS), executions.c.updated_at < before, ~open_run)
            .limit(limit)
        )
        return [row.id for row in rows]
