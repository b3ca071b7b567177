"""Writes to executions and task runs, inside one database transaction.

The engine does each step of an execution (a task finished, a task failed, a run was triggered) in one
`Transaction` that first locks the execution's row, so concurrent steps of the same execution happen one
after the other and each sees what the previous one committed. Status changes are also conditional
UPDATEs (`WHERE status IN (...)`, from the transition table): a change that is no longer allowed simply
does not happen, and the caller learns it from the return value.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update

from orchestrator.document import to_document
from orchestrator.errors import NotFound
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, RunSummary, TaskRun
from orchestrator.inputs import BoundTask
from orchestrator.pipeline import TaskKey
from orchestrator.schema import endpoints, executions, now, pipelines, task_runs
from orchestrator.snapshots import DocumentCache, digest
from orchestrator.status import EXECUTION_ALLOWED, RUN_ALLOWED, ExecutionStatus, RunStatus, predecessors

ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.WAITING, ExecutionStatus.PAUSED, ExecutionStatus.CANCELING)
# Executions whose task runs may still be started (ExecutionStatus.is_active).
ACTIVE_FOR_TASKS = tuple(status for status in ExecutionStatus if status.is_active)
EXECUTION_COLUMNS = [column for column in executions.c if column.name != "document"]
SUMMARY_COLUMNS = [task_runs.c[name] for name in ("id", "stage", "name", "status", "status_message", "output")]


# The statements of every task's path, built once: building them is a good part of their cost.
_EXECUTION = select(*EXECUTION_COLUMNS).where(executions.c.id == bindparam("id"))
_LOCK_EXECUTION = _EXECUTION.with_for_update()
_SUMMARIES = (
    select(*SUMMARY_COLUMNS).where(task_runs.c.execution_id == bindparam("execution_id")).order_by(task_runs.c.position)
)
_EXECUTION_ACTIVE = (
    select(executions.c.id)
    .where(executions.c.id == task_runs.c.execution_id, executions.c.status.in_(ACTIVE_FOR_TASKS))
    .exists()
)
_CLAIM = (
    update(task_runs)
    .where(
        task_runs.c.id == bindparam("run_id"),
        task_runs.c.status == RunStatus.QUEUED,
        task_runs.c.attempt == bindparam("claimed_attempt"),
        _EXECUTION_ACTIVE,
    )
    .values(
        status=RunStatus.RUNNING,
        started_at=func.coalesce(task_runs.c.started_at, bindparam("now")),
        updated_at=bindparam("now"),
    )
    .returning(*task_runs.c)
)
_QUEUE = (
    update(task_runs)
    .where(
        task_runs.c.execution_id == bindparam("in_execution"),
        task_runs.c.stage == bindparam("in_stage"),
        task_runs.c.name == bindparam("named"),
        task_runs.c.status == RunStatus.NOT_STARTED,
    )
    .values(
        status=RunStatus.QUEUED,
        attempt=task_runs.c.attempt + 1,
        input=bindparam("given"),
        bindings=bindparam("bound"),
        endpoints=bindparam("at"),
        updated_at=bindparam("now"),
    )
    .returning(*task_runs.c)
)
_CANCEL_ABANDONED = (
    update(task_runs)
    .where(
        task_runs.c.id == bindparam("run_id"),
        task_runs.c.status == RunStatus.QUEUED,
        task_runs.c.attempt == bindparam("claimed_attempt"),
        ~_EXECUTION_ACTIVE,
    )
    .values(
        status=RunStatus.CANCELED,
        status_message="not run: its execution is no longer running",
        finished_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)

_FINISH = {
    new: update(task_runs)
    .where(task_runs.c.id == bindparam("run_id"), task_runs.c.status.in_(predecessors(RUN_ALLOWED, new)))
    .values(
        status=new,
        status_message=bindparam("message"),
        output=bindparam("output"),
        finished_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    for new in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED)
}


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
        rollback=row.rollback,
        rollback_of=row.rollback_of,
        rollback_execution_id=row.rollback_execution_id,
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
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
    )


def pipeline_from_row(row: Row[Any], documents: DocumentCache) -> PipelineRecord:
    pipeline = documents.pipeline(row.document_hash, lambda: row.document)
    return PipelineRecord(id=row.id, pipeline=pipeline, created_at=row.created_at, updated_at=row.updated_at)


class Transaction:
    """Reads and conditional writes on one connection inside one transaction."""

    def __init__(self, conn: Connection, documents: DocumentCache) -> None:
        self.conn = conn
        self.documents = documents

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
            RunSummary(row.id, row.stage, row.name, RunStatus(row.status), row.status_message, row.output)
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

    def task_run(self, task_run_id: str) -> TaskRun:
        row = self.conn.execute(select(task_runs).where(task_runs.c.id == task_run_id)).first()
        if row is None:
            raise NotFound(f"there is no task run with id '{task_run_id}'")
        return task_run_from_row(row)

    # -- executions

    def insert_execution(
        self,
        record: PipelineRecord,
        input: Mapping[str, Any],
        comments: str,
        *,
        requested_by: str,
        rollback_of: str | None = None,
    ) -> Execution:
        """Record a new execution with a task run per task; RUNNING, or QUEUED at the concurrency limit.

        A rollback never waits in a queue: putting the environment back comes first.
        """
        pipeline = record.pipeline
        # The counter UPDATE locks the pipeline row, so concurrent triggers count active runs one by one.
        index = self.conn.execute(
            update(pipelines)
            .where(pipelines.c.id == record.id)
            .values(execution_count=pipelines.c.execution_count + 1)
            .returning(pipelines.c.execution_count)
        ).scalar_one_or_none()
        if index is None:
            raise NotFound(f"pipeline '{pipeline.name}' no longer exists")
        active = self._active_count(record.id)
        running = rollback_of is not None or active < pipeline.concurrency
        stamp = now()
        execution_id = new_id()
        document = to_document(pipeline)
        document_hash = digest(document)
        self.documents.put(document_hash, pipeline)
        self.conn.execute(
            executions.insert().values(
                id=execution_id,
                pipeline_id=record.id,
                pipeline_name=pipeline.name,
                project=pipeline.project,
                index=index,
                status=ExecutionStatus.RUNNING if running else ExecutionStatus.QUEUED,
                status_message=""
                if running
                else f"queued behind {active} running (concurrency {pipeline.concurrency})",
                comments=comments,
                input=dict(input),
                output={},
                document=document,
                document_hash=document_hash,
                rollback=rollback_of is not None,
                rollback_of=rollback_of,
                requested_by=requested_by,
                created_at=stamp,
                started_at=stamp if running else None,
                updated_at=stamp,
            )
        )
        self.conn.execute(
            task_runs.insert(),
            [
                {
                    "id": new_id(),
                    "execution_id": execution_id,
                    "stage": stage.name,
                    "name": task.name,
                    "type": task.type,
                    "position": position,
                    "status": RunStatus.NOT_STARTED,
                    "status_message": "",
                    "bindings": {},
                    "endpoints": {},
                    "state": {},
                    "attempt": 0,
                    "updated_at": stamp,
                }
                for position, (_, _, task, stage) in enumerate(pipeline.ordered_tasks())
            ],
        )
        return self.execution(execution_id)

    def _active_count(self, pipeline_id: str) -> int:
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(executions)
                .where(executions.c.pipeline_id == pipeline_id, executions.c.status.in_(ACTIVE))
            ).scalar_one()
        )

    def transition(self, execution_id: str, new: ExecutionStatus, message: str = "", **values: Any) -> bool:
        """Move an execution to `new` if the transition table allows it from where it stands now."""
        stamp = now()
        if new.is_terminal:
            values["finished_at"] = stamp
        if new is ExecutionStatus.RUNNING:
            values.setdefault("started_at", stamp)
        result = self.conn.execute(
            executions.update()
            .where(executions.c.id == execution_id, executions.c.status.in_(predecessors(EXECUTION_ALLOWED, new)))
            .values(status=new, status_message=message, updated_at=stamp, **values)
        )
        return result.rowcount == 1

    def promote_queued(self, pipeline_id: str) -> list[str]:
        """Move a pipeline's oldest QUEUED executions to RUNNING while its concurrency allows; their ids."""
        concurrency = self.conn.execute(
            select(pipelines.c.concurrency).where(pipelines.c.id == pipeline_id).with_for_update()
        ).scalar_one_or_none()
        if concurrency is None:
            return []
        free = concurrency - self._active_count(pipeline_id)
        if free <= 0:
            return []
        waiting = self.conn.execute(
            select(executions.c.id)
            .where(executions.c.pipeline_id == pipeline_id, executions.c.status == ExecutionStatus.QUEUED)
            .order_by(executions.c.index)
            .limit(free)
        )
        return [row.id for row in waiting.all() if self.transition(row.id, ExecutionStatus.RUNNING)]

    # -- task runs

    def queue_task_runs(self, execution_id: str, bound: Iterable[tuple[TaskKey, BoundTask]]) -> list[TaskRun]:
        """Move NOT_STARTED task runs to QUEUED with their next attempt and what they are given; the runs moved."""
        moved = []
        for (stage, name), task in bound:
            values = {
                "in_execution": execution_id,
                "in_stage": stage,
                "named": name,
                "given": dict(task.input),
                "bound": dict(task.bindings),
                "at": dict(task.endpoints),
                "now": now(),
            }
            row = self.conn.execute(_QUEUE, values).first()
            if row is not None:
                moved.append(task_run_from_row(row))
        return moved

    def settle_task_runs(self, execution_id: str, settled: Iterable[tuple[TaskKey, str]], new: RunStatus) -> None:
        """Move NOT_STARTED task runs straight to SKIPPED or FAILED (their preCondition decided)."""
        stamp = now()
        for (stage, name), message in settled:
            self.conn.execute(
                update(task_runs)
                .where(
                    task_runs.c.execution_id == execution_id,
                    task_runs.c.stage == stage,
                    task_runs.c.name == name,
                    task_runs.c.status == RunStatus.NOT_STARTED,
                )
                .values(status=new, status_message=message, finished_at=stamp, updated_at=stamp)
            )

    def cancel_queued_task_runs(self, execution_id: str, message: str) -> None:
        """Cancel an execution's QUEUED task runs (a worker that receives one later finds nothing to run)."""
        stamp = now()
        self.conn.execute(
            update(task_runs)
            .where(task_runs.c.execution_id == execution_id, task_runs.c.status == RunStatus.QUEUED)
            .values(status=RunStatus.CANCELED, status_message=message, finished_at=stamp, updated_at=stamp)
        )

    def claim_task_run(self, task_run_id: str, attempt: int) -> TaskRun | None:
        """Take a QUEUED task run of a running execution for this attempt (QUEUED -> RUNNING).

        None if it is not there to take: another worker has it, the message is for another attempt, or its
        execution is no longer running.
        """
        row = self.conn.execute(_CLAIM, {"run_id": task_run_id, "claimed_attempt": attempt, "now": now()}).first()
        return None if row is None else task_run_from_row(row)

    def cancel_abandoned(self, task_run_id: str, attempt: int) -> bool:
        """Cancel a QUEUED task run whose execution ended before a worker got to it."""
        values = {"run_id": task_run_id, "claimed_attempt": attempt, "now": now()}
        return self.conn.execute(_CANCEL_ABANDONED, values).rowcount == 1

    def finish_task_run(
        self, task_run_id: str, new: RunStatus, message: str, output: Mapping[str, Any] | None = None
    ) -> bool:
        """Record a task run's end (COMPLETED, FAILED or CANCELED) and its output, if it is still open."""
        values = {
            "run_id": task_run_id,
            "message": message,
            "output": None if output is None else dict(output),
            "now": now(),
        }
        return self.conn.execute(_FINISH[new], values).rowcount == 1

    def requeue_task_run(
        self, task_run_id: str, attempt: int, state: Mapping[str, Any], message: str
    ) -> TaskRun | None:
        """Put a RUNNING task run back in QUEUED for its next attempt, keeping its executor state."""
        row = self.conn.execute(
            update(task_runs)
            .where(
                task_runs.c.id == task_run_id, task_runs.c.status == RunStatus.RUNNING, task_runs.c.attempt == attempt
            )
            .values(
                status=RunStatus.QUEUED,
                attempt=attempt + 1,
                state=dict(state),
                status_message=message,
                updated_at=now(),
            )
            .returning(*task_runs.c)
        ).first()
        return None if row is None else task_run_from_row(row)
