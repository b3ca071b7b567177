"""The statements of a transaction, built once: the execution reads, and every task-run status change as a
`RunChange` derived from the transition table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, bindparam, func, insert, literal, select, update

from orchestrator.schema import UTCDateTime, events, executions, task_runs
from orchestrator.status import RunStatus, check_run
from orchestrator.transaction.rows import EVENT_FIELDS, EXECUTION_COLUMNS, IN_PROGRESS, RUNS_TASKS, SUMMARY_COLUMNS

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
