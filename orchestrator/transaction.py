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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, String, bindparam, func, insert, literal, select, update

from orchestrator import notices
from orchestrator.document import to_document
from orchestrator.errors import NotFound
from orchestrator.execution import (
    ROLLS_BACK,
    Child,
    Event,
    Execution,
    ExecutionState,
    PipelineRecord,
    Relation,
    RunSummary,
    TaskRun,
)
from orchestrator.inputs import BoundTask
from orchestrator.outbox import Schedule
from orchestrator.pipeline import TaskKey
from orchestrator.schema import UTCDateTime, endpoints, events, executions, now, pipelines, task_runs
from orchestrator.snapshots import DocumentCache, digest
from orchestrator.status import EXECUTION_ALLOWED, ExecutionStatus, RunStatus, check_run, predecessors
from orchestrator.tasktypes import PIPELINE
from orchestrator.useroperations import cancel_active

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


# The statements of every task's path, built once: building them is a good part of their cost.
_EXECUTION = select(*EXECUTION_COLUMNS).where(executions.c.id == bindparam("id"))
_LOCK_EXECUTION = _EXECUTION.with_for_update()
_SUMMARIES = (
    select(*SUMMARY_COLUMNS).where(task_runs.c.execution_id == bindparam("execution_id")).order_by(task_runs.c.position)
)
_EXECUTION_RUNS_TASKS = (
    select(executions.c.id)
    .where(executions.c.id == task_runs.c.execution_id, executions.c.status.in_(RUNS_TASKS))
    .exists()
)
_EXECUTION_IN_PROGRESS = (
    select(executions.c.id)
    .where(executions.c.id == task_runs.c.execution_id, executions.c.status.in_(IN_PROGRESS))
    .exists()
)
_THIS_ATTEMPT = (task_runs.c.id == bindparam("run_id"), task_runs.c.attempt == bindparam("at_attempt"))
_BY_KEY = (
    task_runs.c.execution_id == bindparam("in_execution"),
    task_runs.c.stage == bindparam("in_stage"),
    task_runs.c.name == bindparam("named"),
)
# A running run with no lease at all was claimed by a Rollway from before leases: it is reclaimed like any other.
_LEASE_EXPIRED = (task_runs.c.lease_expires_at < bindparam("now")) | task_runs.c.lease_expires_at.is_(None)


@dataclass(frozen=True)
class RunChange:
    """One kind of task-run status change: its UPDATE, and on PostgreSQL the same UPDATE writing its events too.

    `logged` is one statement (a data-modifying CTE), so recording the history costs a task no round trip;
    SQLite, which has no such CTEs, writes the events in one INSERT before the transaction commits.
    """

    old: RunStatus
    statement: Any
    logged: Any


def run_change(old: RunStatus, new: RunStatus, *where: Any, **values: Any) -> RunChange:
    """The change that moves task runs from `old` to `new` where `where` holds, returning the rows it moved.

    Every task-run status change is built here, from the transition table: a change the table does not allow
    fails when the module is imported, and each names a single `old`, so its events know it.
    """
    check_run(old, new)
    finished: dict[str, Any] = {"finished_at": bindparam("now")} if new.is_terminal else {}
    statement = (
        update(task_runs)
        .where(task_runs.c.status == old, *where)
        .values(status=new, updated_at=bindparam("now"), **finished, **values)
        .returning(*task_runs.c)
    )
    moved = statement.cte("moved")
    logged = insert(events).from_select(
        list(EVENT_FIELDS),
        select(
            bindparam("now", type_=UTCDateTime()),
            moved.c.execution_id,
            moved.c.id,
            moved.c.stage,
            moved.c.name,
            literal(old.value),
            moved.c.status,
            moved.c.status_message,
            bindparam("actor", type_=String()),
        ).select_from(moved),
    )
    return RunChange(old, statement, select(moved).add_cte(logged.cte("logged")))


_R = RunStatus
# What a run is given when it leaves NOT_STARTED, queued or held alike.
_BOUND: dict[str, Any] = {
    "attempt": task_runs.c.attempt + 1,
    "input": bindparam("given"),
    "bindings": bindparam("bound"),
    "endpoints": bindparam("at"),
    "sealed_input": bindparam("sealed"),
}
_QUEUE = run_change(
    _R.NOT_STARTED,
    _R.QUEUED,
    *_BY_KEY,
    **_BOUND,
    dispatch_after=bindparam("due"),
    sent_at=bindparam("sent"),
)
# A run held for a person's answer: bound like a queued one, but with nothing to send (no due time, never sent),
# so neither the relay nor the sweep ever hands it to a worker.
_HOLD = run_change(
    _R.NOT_STARTED,
    _R.WAITING,
    *_BY_KEY,
    **_BOUND,
    status_message=bindparam("message"),
    dispatch_after=None,
    sent_at=None,
)
# A Pipeline task's run while its nested execution runs: bound like a queued one, never sent, its output naming
# the child (which is how the child's end finds it).
_WAIT_FOR_CHILD = run_change(
    _R.NOT_STARTED,
    _R.WAITING,
    *_BY_KEY,
    **_BOUND,
    status_message=bindparam("message"),
    output=bindparam("output"),
    dispatch_after=None,
    sent_at=None,
)
_FAIL_HELD = run_change(
    _R.WAITING,
    _R.FAILED,
    task_runs.c.id == bindparam("run_id"),
    status_message=bindparam("message"),
    output=bindparam("output"),
)
_RELEASE = run_change(
    _R.WAITING,
    _R.QUEUED,
    task_runs.c.id == bindparam("run_id"),
    status_message=bindparam("message"),
    dispatch_after=bindparam("due"),
    sent_at=bindparam("sent"),
)
_REFUSE = run_change(_R.WAITING, _R.FAILED, task_runs.c.id == bindparam("run_id"), status_message=bindparam("message"))
# A held run with nothing to run (a UserOperation task): its answer is its output.
_COMPLETE_HELD = run_change(
    _R.WAITING,
    _R.COMPLETED,
    task_runs.c.id == bindparam("run_id"),
    status_message=bindparam("message"),
    output=bindparam("output"),
)
_CLAIM = run_change(
    _R.QUEUED,
    _R.RUNNING,
    *_THIS_ATTEMPT,
    _EXECUTION_RUNS_TASKS,
    started_at=func.coalesce(task_runs.c.started_at, bindparam("now")),
    lease_expires_at=bindparam("lease_until"),
    worker=bindparam("holder"),
)


_AGAIN = {
    lost: run_change(
        _R.RUNNING,
        _R.QUEUED,
        *_THIS_ATTEMPT,
        *((_LEASE_EXPIRED,) if lost else ()),
        attempt=task_runs.c.attempt + 1,
        state=bindparam("kept"),
        status_message=bindparam("message"),
        dispatch_after=bindparam("due"),
        sent_at=bindparam("sent"),
        lease_expires_at=None,
    )
    for lost in (False, True)
}
_FINISH = {
    (new, lost): run_change(
        _R.RUNNING,
        new,
        *_THIS_ATTEMPT,
        *((_LEASE_EXPIRED,) if lost else ()),
        status_message=bindparam("message"),
        output=bindparam("output"),
        lease_expires_at=None,
    )
    for new in (_R.COMPLETED, _R.FAILED)
    for lost in (False, True)
}
_SETTLE = {
    new: run_change(_R.NOT_STARTED, new, *_BY_KEY, status_message=bindparam("message"))
    for new in (_R.SKIPPED, _R.FAILED)
}
_CANCEL_QUEUED = run_change(
    _R.QUEUED, _R.CANCELED, task_runs.c.execution_id == bindparam("in_execution"), status_message=bindparam("message")
)
_CANCEL_WAITING = run_change(
    _R.WAITING, _R.CANCELED, task_runs.c.execution_id == bindparam("in_execution"), status_message=bindparam("message")
)
# A paused execution's queued runs are not abandoned: their messages are dropped, and its resume sends them again.
_CANCEL_ABANDONED = run_change(
    _R.QUEUED,
    _R.CANCELED,
    *_THIS_ATTEMPT,
    ~_EXECUTION_IN_PROGRESS,
    status_message="not run: its execution is no longer running",
)
_RENEW = (
    update(task_runs)
    .where(*_THIS_ATTEMPT, task_runs.c.status == _R.RUNNING, task_runs.c.worker == bindparam("holder"))
    .values(lease_expires_at=bindparam("lease_until"))
)


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


class Transaction:
    """Reads and conditional writes on one connection inside one transaction.

    Every status change it makes is also recorded as an event; the events are written in one statement when
    `flush_events` runs, which the store does just before it commits.
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

    # -- task runs

    def queue_task_runs(
        self,
        execution_id: str,
        bound: Iterable[tuple[TaskKey, BoundTask]],
        schedule: Schedule,
        actor: str = "",
        sealed: Mapping[TaskKey, str] | None = None,
    ) -> list[TaskRun]:
        """Move NOT_STARTED task runs to QUEUED with their next attempt, what they are given and when they are
        due; the runs moved. `sealed` holds the full input of runs whose recorded input had secrets masked."""
        stamp = now()
        moved: list[TaskRun] = []
        for (stage, name), task in bound:
            values = {
                "in_execution": execution_id,
                "in_stage": stage,
                "named": name,
                "given": dict(task.input),
                "bound": dict(task.bindings),
                "at": dict(task.endpoints),
                "sealed": (sealed or {}).get((stage, name)),
                "due": schedule.due,
                "sent": schedule.sent,
                "now": stamp,
            }
            moved += self._move_runs(_QUEUE, values, actor)
        return moved

    def hold_task_runs(
        self,
        execution_id: str,
        held: Iterable[tuple[TaskKey, BoundTask, str]],
        actor: str = "",
        sealed: Mapping[TaskKey, str] | None = None,
    ) -> list[TaskRun]:
        """Move NOT_STARTED task runs to WAITING, bound as `queue_task_runs` would, each with why it waits; the runs
        moved. Nothing sends them until `release_task_run`."""
        stamp = now()
        moved: list[TaskRun] = []
        for (stage, name), task, message in held:
            values = {
                "in_execution": execution_id,
                "in_stage": stage,
                "named": name,
                "given": dict(task.input),
                "bound": dict(task.bindings),
                "at": dict(task.endpoints),
                "sealed": (sealed or {}).get((stage, name)),
                "message": message,
                "now": stamp,
            }
            moved += self._move_runs(_HOLD, values, actor)
        return moved

    def wait_for_child(
        self, execution_id: str, key: TaskKey, task: BoundTask, message: str, output: Mapping[str, Any]
    ) -> TaskRun | None:
        """Move a Pipeline task's NOT_STARTED run to WAITING for its nested execution, bound as `queue_task_runs`
        would, with `output` naming the child; the run, or None if it had already left NOT_STARTED."""
        stage, name = key
        values = {
            "in_execution": execution_id,
            "in_stage": stage,
            "named": name,
            "given": dict(task.input),
            "bound": dict(task.bindings),
            "at": dict(task.endpoints),
            "sealed": None,
            "message": message,
            "output": dict(output),
            "now": now(),
        }
        moved = self._move_runs(_WAIT_FOR_CHILD, values, "")
        return moved[0] if moved else None

    def fail_held_task_run(self, task_run_id: str, message: str, output: Mapping[str, Any], actor: str = "") -> bool:
        """Fail a held run with `output` (WAITING -> FAILED); False if it no longer waits."""
        values = {"run_id": task_run_id, "message": message, "output": dict(output), "now": now()}
        return bool(self._move_runs(_FAIL_HELD, values, actor))

    def release_task_run(self, task_run_id: str, message: str, schedule: Schedule, actor: str = "") -> TaskRun | None:
        """Queue a held run (WAITING -> QUEUED) for the attempt it was bound with; None if it no longer waits."""
        values = {"run_id": task_run_id, "message": message, "due": schedule.due, "sent": schedule.sent, "now": now()}
        moved = self._move_runs(_RELEASE, values, actor)
        return moved[0] if moved else None

    def refuse_task_run(self, task_run_id: str, message: str, actor: str = "") -> bool:
        """Fail a held run (WAITING -> FAILED); False if it no longer waits."""
        values = {"run_id": task_run_id, "message": message, "now": now()}
        return bool(self._move_runs(_REFUSE, values, actor))

    def complete_held_task_run(
        self, task_run_id: str, message: str, output: Mapping[str, Any], actor: str = ""
    ) -> bool:
        """Complete a held run with `output` (WAITING -> COMPLETED); False if it no longer waits."""
        values = {"run_id": task_run_id, "message": message, "output": dict(output), "now": now()}
        return bool(self._move_runs(_COMPLETE_HELD, values, actor))

    def settle_task_runs(
        self, execution_id: str, settled: Iterable[tuple[TaskKey, str]], new: RunStatus, actor: str = ""
    ) -> None:
        """Move NOT_STARTED task runs straight to SKIPPED or FAILED (their preCondition or bindings decided)."""
        stamp = now()
        for (stage, name), message in settled:
            values = {"in_execution": execution_id, "in_stage": stage, "named": name, "message": message, "now": stamp}
            self._move_runs(_SETTLE[new], values, actor)

    def cancel_queued_task_runs(self, execution_id: str, message: str, actor: str = "") -> None:
        """Cancel an execution's QUEUED task runs (a worker that receives one later finds nothing to run)."""
        stamp = now()
        self._move_runs(_CANCEL_QUEUED, {"in_execution": execution_id, "message": message, "now": stamp}, actor)

    def claim_task_run(self, task_run_id: str, attempt: int, holder: str, lease_until: datetime) -> TaskRun | None:
        """Take a QUEUED task run of a running execution for this attempt (QUEUED -> RUNNING), with a lease.

        None if it is not there to take: another worker has it, the message is for another attempt, or its
        execution is no longer running.
        """
        values = {"run_id": task_run_id, "at_attempt": attempt, "holder": holder, "lease_until": lease_until}
        moved = self._move_runs(_CLAIM, values | {"now": now()}, holder)
        return moved[0] if moved else None

    def held_by(self, task_run_id: str, attempt: int, holder: str) -> TaskRun | None:
        """The run if `holder` has already claimed this attempt (a claim retried after its answer was lost)."""
        row = self.conn.execute(
            select(task_runs).where(
                *_THIS_ATTEMPT, task_runs.c.status == _R.RUNNING, task_runs.c.worker == bindparam("holder")
            ),
            {"run_id": task_run_id, "at_attempt": attempt, "holder": holder},
        ).first()
        return None if row is None else task_run_from_row(row)

    def renew_lease(self, task_run_id: str, attempt: int, holder: str, lease_until: datetime) -> bool:
        """Extend the lease `holder` has on a running attempt; False when it no longer holds it."""
        values = {"run_id": task_run_id, "at_attempt": attempt, "holder": holder, "lease_until": lease_until}
        return self.conn.execute(_RENEW, values).rowcount == 1

    def cancel_abandoned(self, task_run_id: str, attempt: int, actor: str = "") -> bool:
        """Cancel a QUEUED task run whose execution ended before a worker got to it."""
        stamp = now()
        values = {"run_id": task_run_id, "at_attempt": attempt, "now": stamp}
        return bool(self._move_runs(_CANCEL_ABANDONED, values, actor))

    def finish_task_run(
        self,
        run: TaskRun,
        new: RunStatus,
        message: str,
        output: Mapping[str, Any] | None = None,
        *,
        actor: str = "",
        lost: bool = False,
    ) -> bool:
        """Record the end (COMPLETED or FAILED) of a running attempt and its output, if it is still running.

        With `lost`, only while its lease has expired: a heartbeat that just renewed it wins.
        """
        stamp = now()
        values = {
            "run_id": run.id,
            "at_attempt": run.attempt,
            "message": message,
            "output": None if output is None else dict(output),
            "now": stamp,
        }
        return bool(self._move_runs(_FINISH[new, lost], values, actor))

    def requeue_task_run(
        self,
        run: TaskRun,
        state: Mapping[str, Any],
        message: str,
        schedule: Schedule,
        *,
        actor: str = "",
        lost: bool = False,
    ) -> TaskRun | None:
        """Put a RUNNING attempt back in QUEUED as the next attempt, keeping its executor state."""
        stamp = now()
        values = {
            "run_id": run.id,
            "at_attempt": run.attempt,
            "kept": dict(state),
            "message": message,
            "due": schedule.due,
            "sent": schedule.sent,
            "now": stamp,
        }
        moved = self._move_runs(_AGAIN[lost], values, actor)
        return moved[0] if moved else None

    # -- what the sweep looks for

    def expired_leases(self, stamp: datetime, limit: int) -> list[TaskRun]:
        """Running task runs whose worker stopped renewing their lease before `stamp`."""
        expired = (task_runs.c.lease_expires_at < stamp) | task_runs.c.lease_expires_at.is_(None)
        query = select(task_runs).where(task_runs.c.status == _R.RUNNING, expired)
        return [task_run_from_row(row) for row in self.conn.execute(query.limit(limit))]

    def due_to_send(self, horizon: datetime, resend_before: datetime, limit: int) -> list[tuple[TaskRun, bool]]:
        """Queued runs of running executions to send: never sent and due before `horizon`, or sent before
        `resend_before` and still not claimed; each with whether its execution is a rollback."""
        query = (
            select(task_runs, executions.c.relation.in_(ROLLING_BACK_RELATIONS).label("of_rollback"))
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
        return [(task_run_from_row(row), bool(row.of_rollback)) for row in self.conn.execute(query)]

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

    def events(self, execution_id: str) -> list[Event]:
        """An execution's history, oldest first."""
        rows = self.conn.execute(select(events).where(events.c.execution_id == execution_id).order_by(events.c.id))
        return [event_from_row(row) for row in rows]
