"""The outbox: what a committed step has to send to workers, and when.

Nothing lives only in the broker. A step that queues a task run records, in the same transaction, when the
run is due (`dispatch_after`) and whether it is being sent now (`sent_at`). After the commit the relay sends
what is marked sent; the sweep sends what is due and was never sent, and sends again what was sent but never
claimed within a lease (its message died with a Redis restart, a worker, or a process between commit and
send), then at doubling intervals while it stays unclaimed (`resend_due`: busy workers do not get a copy per
lease). A message sent twice is harmless: a worker only claims a run for the attempt its message names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.execution import Execution, TaskRun


@dataclass(frozen=True)
class Dispatch:
    """One message to send: run attempt `attempt` of a task run, `countdown` seconds from now.

    `rollback` runs belong to rollback executions, which go ahead of release traffic. `label` names the run as
    people do (`run_label`): the dispatcher shows it to Flower and in worker logs, nothing acts on it.
    """

    task_run_id: str
    attempt: int
    type: str
    rollback: bool
    countdown: float = 0.0
    label: str = ""

    @classmethod
    def of(cls, run: TaskRun, execution: Execution, countdown: float = 0.0) -> Dispatch:
        """The message that runs `run`'s current attempt."""
        label = run_label(execution.pipeline_name, execution.index, run.stage, run.name)
        return cls(run.id, run.attempt, run.type, execution.rollback, countdown, label)


def run_label(pipeline: str, index: int, stage: str, task: str) -> str:
    """A task run as people name it: `RollingUpgrade-Example #12 / Development / Verify Deployment`."""
    return f"{pipeline} #{index} / {stage} / {task}"


@dataclass(frozen=True)
class Schedule:
    """When a queued attempt is due, and whether the relay sends it at once (else the sweep does when due)."""

    due: datetime
    sent: datetime | None

    @classmethod
    def plan(cls, now: datetime, countdown: float, horizon: float) -> Schedule:
        """A wait no longer than the sweep interval (`horizon`) goes to the broker now with a countdown; a longer
        one stays in the database until the sweep before it is due, so no worker holds it for long."""
        countdown = max(0.0, countdown)
        due = now + timedelta(seconds=countdown)
        return cls(due, now if countdown <= horizon else None)


def countdown(due: datetime | None, now: datetime) -> float:
    """Seconds from `now` until `due`; 0 when it is already due."""
    return 0.0 if due is None else max(0.0, (due - now).total_seconds())


# A message sent again and again while workers are busy would pile up copies in the queue: each re-send waits as
# long again as the run had waited when it was last sent (one lease at least, RESEND_MAX_LEASES at most).
RESEND_MAX_LEASES = 8


def resend_due(sent_at: datetime | None, dispatch_after: datetime | None, now: datetime, lease: timedelta) -> bool:
    """Whether a queued run's message should be sent (again) now: never sent, or unclaimed for longer than its
    backoff, which doubles with each re-send (the sweep keeps the first condition: a lease since it came due)."""
    if sent_at is None:
        return True
    waited = sent_at - dispatch_after if dispatch_after is not None else timedelta(0)
    backoff = min(max(lease, waited), lease * RESEND_MAX_LEASES)
    return now - sent_at >= backoff
