"""Statuses of executions and of stage and task runs, with the one table of allowed transitions.

Names are Code Stream's. An ended execution is terminal (`TERMINAL`, named on its own: it is not "has no way
out"), and only a person can move one on again: a manual rollback takes a COMPLETED, FAILED or ROLLBACK_FAILED
execution to ROLLING_BACK (`ROLLS_BACK_BY_HAND`). The store performs every transition as a conditional UPDATE
whose WHERE clause is `predecessors(new)`, so two workers racing for the same change cannot both win.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from orchestrator.errors import InvalidTransition


class ExecutionStatus(StrEnum):
    """Where a pipeline execution stands."""

    NOT_STARTED = "NOT_STARTED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    PAUSED = "PAUSED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLBACK_COMPLETED = "ROLLBACK_COMPLETED"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"

    @property
    def is_terminal(self) -> bool:
        """The execution has ended: nothing of it runs, and nothing moves it on but a person's manual rollback."""
        return self in TERMINAL

    @property
    def rolls_back_by_hand(self) -> bool:
        """A person may roll an execution in this status back (`POST /api/executions/<id>/rollback`)."""
        return self in ROLLS_BACK_BY_HAND

    @property
    def runs_tasks(self) -> bool:
        """Tasks of an execution in this status may be dispatched, claimed and advanced."""
        return self in RUNS_TASKS

    @property
    def in_progress(self) -> bool:
        """The execution has not stopped: it runs tasks, or it is paused.

        Its QUEUED task runs are kept (a paused execution's wait for its resume), and a task failing still fails it
        or starts its rollback.
        """
        return self in IN_PROGRESS

    @property
    def holds_slot(self) -> bool:
        """An execution in this status counts against its pipeline's `concurrency`.

        A rolling-back execution still owns the environment it deploys to: the next release must wait for it.
        """
        return self in HOLDS_SLOT


class RunStatus(StrEnum):
    """Where a stage run or a task run stands."""

    NOT_STARTED = "NOT_STARTED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        return not RUN_ALLOWED[self]


TERMINAL = frozenset(
    {
        ExecutionStatus.CANCELED,
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.ROLLBACK_COMPLETED,
        ExecutionStatus.ROLLBACK_FAILED,
    }
)
# Ended with what it deployed still in place (COMPLETED, or FAILED with no rollback), or with its rollback failed.
ROLLS_BACK_BY_HAND = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.ROLLBACK_FAILED})
RUNS_TASKS = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.WAITING})
IN_PROGRESS = RUNS_TASKS | {ExecutionStatus.PAUSED}
HOLDS_SLOT = frozenset(
    {
        ExecutionStatus.RUNNING,
        ExecutionStatus.WAITING,
        ExecutionStatus.PAUSED,
        ExecutionStatus.CANCELING,
        ExecutionStatus.ROLLING_BACK,
    }
)

S = TypeVar("S", ExecutionStatus, RunStatus)

_E = ExecutionStatus
EXECUTION_ALLOWED: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    _E.NOT_STARTED: frozenset({_E.QUEUED, _E.RUNNING, _E.CANCELED}),
    _E.QUEUED: frozenset({_E.RUNNING, _E.CANCELED}),
    _E.RUNNING: frozenset({_E.WAITING, _E.PAUSED, _E.CANCELING, _E.CANCELED, _E.COMPLETED, _E.FAILED, _E.ROLLING_BACK}),
    _E.WAITING: frozenset({_E.RUNNING, _E.PAUSED, _E.CANCELING, _E.CANCELED, _E.COMPLETED, _E.FAILED, _E.ROLLING_BACK}),
    # A task already running when the execution was paused may still fail it. Resumed, it waits again while one of
    # its tasks still waits for a person's answer.
    _E.PAUSED: frozenset({_E.RUNNING, _E.WAITING, _E.CANCELING, _E.CANCELED, _E.FAILED, _E.ROLLING_BACK}),
    _E.CANCELING: frozenset({_E.CANCELED}),
    _E.ROLLING_BACK: frozenset({_E.ROLLBACK_COMPLETED, _E.ROLLBACK_FAILED}),
    _E.CANCELED: frozenset(),
    _E.ROLLBACK_COMPLETED: frozenset(),
    # Ended, but a person may roll them back by hand.
    **{status: frozenset({_E.ROLLING_BACK}) for status in ROLLS_BACK_BY_HAND},
}

_R = RunStatus
RUN_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    # A run that needs a person's answer first (see `useroperations.py`) is held in WAITING instead of QUEUED.
    _R.NOT_STARTED: frozenset({_R.QUEUED, _R.WAITING, _R.RUNNING, _R.SKIPPED, _R.CANCELED, _R.FAILED}),
    _R.QUEUED: frozenset({_R.RUNNING, _R.CANCELED, _R.FAILED}),
    # A waiting POLL or K8S VERIFY, or a run lost with its worker, is put back in QUEUED with its next attempt.
    _R.RUNNING: frozenset({_R.QUEUED, _R.WAITING, _R.COMPLETED, _R.FAILED, _R.CANCELED}),
    # Approved, a held run is queued for a worker; rejected, it fails.
    _R.WAITING: frozenset({_R.QUEUED, _R.RUNNING, _R.COMPLETED, _R.FAILED, _R.CANCELED}),
    _R.COMPLETED: frozenset(),
    _R.FAILED: frozenset(),
    _R.SKIPPED: frozenset(),
    _R.CANCELED: frozenset(),
}


def predecessors(table: dict[S, frozenset[S]], new: S) -> frozenset[S]:
    """Every status from which `new` may be reached."""
    return frozenset(old for old, allowed in table.items() if new in allowed)


def check_execution(old: ExecutionStatus, new: ExecutionStatus) -> None:
    """Raise InvalidTransition unless an execution may go from `old` to `new`."""
    if new not in EXECUTION_ALLOWED[old]:
        raise InvalidTransition(f"an execution cannot go from {old} to {new}")


def check_run(old: RunStatus, new: RunStatus) -> None:
    """Raise InvalidTransition unless a stage or task run may go from `old` to `new`."""
    if new not in RUN_ALLOWED[old]:
        raise InvalidTransition(f"a task run cannot go from {old} to {new}")
