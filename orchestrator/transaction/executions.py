"""The writes and relations of executions inside a transaction: insert, transition, concurrency slots and
promotion, and the parent/child relations of rollbacks and nested executions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from orchestrator.document import to_document
from orchestrator.errors import NotFound
from orchestrator.execution import Child, Execution, PipelineRecord, Relation, TaskRun
from orchestrator.schema import executions, now, pipelines, task_runs
from orchestrator.snapshots import digest
from orchestrator.status import EXECUTION_ALLOWED, ExecutionStatus, RunStatus, predecessors
from orchestrator.tasktypes import PIPELINE
from orchestrator.transaction.rows import CHILD_COLUMNS, HOLDS_SLOT, TERMINAL, child_from_row, new_id, task_run_from_row
from orchestrator.transaction.statements import _CANCEL_WAITING, _R
from orchestrator.transaction.taskruns import TaskRunMoves
from orchestrator.useroperations import cancel_active


class ExecutionMoves(TaskRunMoves):
    """Executions' inserts and transitions (which cancel their open task runs), slots, and relations."""

    def insert_execution(
        self,
        record: PipelineRecord,
        input: Mapping[str, Any],
        comments: str,
        *,
        requested_by: str,
        requested_by_admin: bool = False,
        parent_id: str | None = None,
        relation: Relation | None = None,
        start: bool = True,
        created_at: datetime | None = None,
        note: str = "",
    ) -> Execution:
        """Record a new execution with a task run per task; RUNNING, or QUEUED at the concurrency limit.

        A child names its parent and how it is related (both or neither). A rollback never waits in a queue:
        putting the environment back comes first. Without `start` it is NOT_STARTED, for its parent to start
        later (a manual rollback's rollbacks after the first); `created_at` orders such siblings for certain.
        `note` leads the message of its first event (a forced start says what it overrode).
        """
        if (parent_id is None) != (relation is None):
            raise ValueError("a child execution names both its parent and its relation")
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
        active = self._slots_taken(record.id)
        running = (relation is not None and relation.rolls_back) or active < pipeline.concurrency
        status = ExecutionStatus.RUNNING if running else ExecutionStatus.QUEUED
        message = "" if running else f"queued behind {active} running (concurrency {pipeline.concurrency})"
        if not start:
            running, status = False, ExecutionStatus.NOT_STARTED
            message = "starts when the rollback before it completes"
        stamp = created_at or now()
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
                status=status,
                status_message=message,
                comments=comments,
                input=dict(input),
                output={},
                document=document,
                document_hash=document_hash,
                parent_id=parent_id,
                relation=None if relation is None else relation.value,
                requested_by=requested_by,
                requested_by_admin=requested_by_admin,
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
                    "worker": "",
                    "updated_at": stamp,
                }
                for position, (_, _, task, stage) in enumerate(pipeline.ordered_tasks())
            ],
        )
        said = "; ".join(part for part in (note, message or comments) if part)
        self._execution_event(execution_id, previous=None, status=status, message=said, actor=requested_by, stamp=stamp)
        return self.execution(execution_id)

    def _slots_taken(self, pipeline_id: str) -> int:
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(executions)
                .where(executions.c.pipeline_id == pipeline_id, executions.c.status.in_(HOLDS_SLOT))
            ).scalar_one()
        )

    def transition(
        self, execution_id: str, new: ExecutionStatus, message: str = "", actor: str = "", **values: Any
    ) -> bool:
        """Move an execution to `new` if the transition table allows it from where it stands now.

        An execution that stops running tasks (it ended, or is rolling back) cancels its task runs still queued
        (a worker that gets one later finds nothing to run, and the sweep does not send it again), and those
        waiting for a person's answer with the user operations that asked.
        """
        stamp = now()
        if new.is_terminal:
            values["finished_at"] = stamp
        if new is ExecutionStatus.ROLLING_BACK:
            values.setdefault("finished_at", None)  # an ended execution rolled back by hand is under way again
        if new is ExecutionStatus.RUNNING:
            values.setdefault("started_at", stamp)
        previous = self.conn.execute(
            select(executions.c.status).where(executions.c.id == execution_id)
        ).scalar_one_or_none()
        moved = self.conn.execute(
            executions.update()
            .where(executions.c.id == execution_id, executions.c.status.in_(predecessors(EXECUTION_ALLOWED, new)))
            .values(status=new, status_message=message, updated_at=stamp, **values)
        )
        if moved.rowcount != 1:
            return False
        self._execution_event(
            execution_id, previous=ExecutionStatus(str(previous)), status=new, message=message, actor=actor, stamp=stamp
        )
        if new.is_terminal or new is ExecutionStatus.ROLLING_BACK:
            stopped = f"not run: the execution is {new}"
            self.cancel_queued_task_runs(execution_id, stopped, actor)
            self._move_runs(_CANCEL_WAITING, {"in_execution": execution_id, "message": stopped, "now": stamp}, actor)
            cancel_active(self.conn, execution_id, actor)
        return True

    def promote_queued(self, pipeline_id: str) -> list[str]:
        """Move a pipeline's oldest QUEUED executions to RUNNING while its concurrency allows; their ids."""
        concurrency = self.conn.execute(
            select(pipelines.c.concurrency).where(pipelines.c.id == pipeline_id).with_for_update()
        ).scalar_one_or_none()
        if concurrency is None:
            return []
        free = concurrency - self._slots_taken(pipeline_id)
        if free <= 0:
            return []
        waiting = self.conn.execute(
            select(executions.c.id)
            .where(executions.c.pipeline_id == pipeline_id, executions.c.status == ExecutionStatus.QUEUED)
            .order_by(executions.c.index)
            .limit(free)
        )
        return [row.id for row in waiting.all() if self.transition(row.id, ExecutionStatus.RUNNING, "a slot came free")]

    # -- relations

    def waiting_for(self, parent_id: str, child_id: str) -> TaskRun | None:
        """The parent's Pipeline task run that waits for this nested execution, if one still does."""
        rows = self.conn.execute(
            select(task_runs).where(
                task_runs.c.execution_id == parent_id,
                task_runs.c.status == _R.WAITING,
                task_runs.c.type == PIPELINE,
            )
        )
        found = [task_run_from_row(row) for row in rows]
        return next((run for run in found if (run.output or {}).get("executionId") == child_id), None)

    def nested_in(self, parent_id: str) -> list[str]:
        """The ids of the parent's nested executions (of its Pipeline tasks) that have not ended, oldest first."""
        rows = self.conn.execute(
            select(executions.c.id)
            .where(
                executions.c.parent_id == parent_id,
                executions.c.relation == Relation.NESTED.value,
                executions.c.status.not_in(TERMINAL),
            )
            .order_by(executions.c.created_at, executions.c.id)
        )
        return [row.id for row in rows]

    def nesting_depth(self, execution: Execution) -> int:
        """How many nested executions deep this one is (0 for one that no Pipeline task started)."""
        depth = 0
        while execution.relation is Relation.NESTED and execution.parent_id is not None:
            depth += 1
            execution = self.execution(execution.parent_id)
        return depth

    def children(self, parent_ids: Iterable[str]) -> dict[str, list[Child]]:
        """The child executions of each of these executions, oldest first (those with none are left out)."""
        wanted = list(parent_ids)
        if not wanted:
            return {}
        rows = self.conn.execute(
            select(*CHILD_COLUMNS)
            .where(executions.c.parent_id.in_(wanted))
            .order_by(executions.c.created_at, executions.c.id)
        )
        found: dict[str, list[Child]] = {}
        for row in rows:
            found.setdefault(row.parent_id, []).append(child_from_row(row))
        return found
