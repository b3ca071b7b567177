"""The moves of task runs inside a transaction: queue, hold, release, refuse, complete, settle, cancel, claim,
lease, requeue and finish, each a conditional UPDATE from the transition table that records its events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from orchestrator.execution import TaskRun
from orchestrator.inputs import BoundTask
from orchestrator.outbox import Schedule
from orchestrator.pipeline import TaskKey
from orchestrator.schema import now, task_runs
from orchestrator.status import RunStatus
from orchestrator.transaction.base import TransactionBase
from orchestrator.transaction.rows import task_run_from_row
from orchestrator.transaction.statements import (
    _AGAIN,
    _CANCEL_ABANDONED,
    _CANCEL_QUEUED,
    _CLAIM,
    _COMPLETE_HELD,
    _FAIL_HELD,
    _FINISH,
    _HOLD,
    _QUEUE,
    _R,
    _REFUSE,
    _RELEASE,
    _RENEW,
    _SETTLE,
    _THIS_ATTEMPT,
    _WAIT_FOR_CHILD,
)


class TaskRunMoves(TransactionBase):
    """The run-state moves of task runs; each returns what it moved, so a change no longer allowed is seen."""

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
            values = _bound(execution_id, (stage, name), task, (sealed or {}).get((stage, name)))
            values |= {"due": schedule.due, "sent": schedule.sent, "now": stamp}
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
            values = _bound(execution_id, (stage, name), task, (sealed or {}).get((stage, name)))
            values |= {"message": message, "now": stamp}
            moved += self._move_runs(_HOLD, values, actor)
        return moved

    def wait_for_child(
        self, execution_id: str, key: TaskKey, task: BoundTask, message: str, output: Mapping[str, Any]
    ) -> TaskRun | None:
        """Move a Pipeline task's NOT_STARTED run to WAITING for its nested execution, bound as `queue_task_runs`
        would, with `output` naming the child; the run, or None if it had already left NOT_STARTED."""
        values = _bound(execution_id, key, task, None) | {"message": message, "output": dict(output), "now": now()}
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


def _bound(execution_id: str, key: TaskKey, task: BoundTask, sealed: str | None) -> dict[str, Any]:
    """The parameters every move of a NOT_STARTED run that binds it shares: which run, and what it is given."""
    stage, name = key
    return {
        "in_execution": execution_id,
        "in_stage": stage,
        "named": name,
        "given": dict(task.input),
        "bound": dict(task.bindings),
        "at": dict(task.endpoints),
        "sealed": sealed,
    }
