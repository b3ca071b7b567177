"""What the monitoring views read from the database: task runs as people name them, the waits held for later, and
task rates per minute.

The broker knows messages and the workers know Celery task ids; only the database knows that a message is attempt 2
of `Verify Deployment` in stage `Development` of `RollingUpgrade-Example #12`. These reads turn the ids the workers
report into those names (`active_runs`), count what waits in the database rather than in a queue (`held`), and
bucket recent task starts and ends by minute (`throughput`, pure over the rows `recent_runs` reads).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, func, or_, select

from orchestrator.execution import ROLLS_BACK
from orchestrator.outbox import run_label
from orchestrator.queues import QUEUE_DEFAULT, QUEUE_ROLLBACK
from orchestrator.schema import executions, task_runs
from orchestrator.status import RunStatus
from orchestrator.tasktypes import TASK_TYPES

# How far back the throughput of `GET /api/monitoring/queues` goes.
THROUGHPUT_MINUTES = 30
_ROLLBACK_RELATIONS = [relation.value for relation in ROLLS_BACK]


def queue_of(task_type: str, rollback: bool) -> str:
    """The queue a run of this type travels on (the same rule as the Celery dispatcher's)."""
    if rollback:
        return QUEUE_ROLLBACK
    spec = TASK_TYPES.get(task_type)
    return spec.queue if spec is not None else QUEUE_DEFAULT


@dataclass(frozen=True)
class ActiveRun:
    """A task run a worker reports it is running, named by its pipeline, execution, stage and task."""

    task_run_id: str
    execution_id: str
    project: str
    pipeline: str
    index: int
    stage: str
    task: str
    type: str
    attempt: int
    started_at: datetime | None

    @property
    def label(self) -> str:
        return run_label(self.pipeline, self.index, self.stage, self.task)


def active_runs(conn: Connection, task_run_ids: Iterable[str]) -> dict[str, ActiveRun]:
    """The named runs of these ids (ids of no run are left out)."""
    ids = sorted(set(task_run_ids))
    if not ids:
        return {}
    query = (
        select(
            task_runs.c.id,
            task_runs.c.execution_id,
            executions.c.project,
            executions.c.pipeline_name,
            executions.c.index,
            task_runs.c.stage,
            task_runs.c.name,
            task_runs.c.type,
            task_runs.c.attempt,
            task_runs.c.started_at,
        )
        .join(executions, executions.c.id == task_runs.c.execution_id)
        .where(task_runs.c.id.in_(ids))
    )
    return {
        row.id: ActiveRun(
            task_run_id=row.id,
            execution_id=row.execution_id,
            project=row.project,
            pipeline=row.pipeline_name,
            index=row._mapping["index"],
            stage=row.stage,
            task=row.name,
            type=row.type,
            attempt=row.attempt,
            started_at=row.started_at,
        )
        for row in conn.execute(query)
    }


def _of_rollback() -> ColumnElement[bool]:
    return executions.c.relation.in_(_ROLLBACK_RELATIONS)


def held(conn: Connection, at: datetime) -> dict[str, int]:
    """Queued runs due after `at`, by queue: POLL intervals, VERIFY backoffs and METRIC waits. Each one is either
    still in the database (a wait longer than a sweep) or a Celery countdown message, which a worker holds until it
    is due; Rollway sends no other countdown or ETA messages, so this counts both kinds of wait without asking the
    workers. (A countdown message no worker has taken yet is also in its queue's broker depth.)"""
    query = (
        select(task_runs.c.type, _of_rollback().label("rollback"), func.count())
        .join(executions, executions.c.id == task_runs.c.execution_id)
        .where(task_runs.c.status == RunStatus.QUEUED, task_runs.c.dispatch_after > at)
        .group_by(task_runs.c.type, "rollback")
    )
    counts: Counter[str] = Counter()
    for task_type, rollback, count in conn.execute(query):
        counts[queue_of(task_type, bool(rollback))] += count
    return dict(counts)


def running(conn: Connection) -> dict[str, int]:
    """Runs a worker has claimed and not finished, by queue."""
    query = (
        select(task_runs.c.type, _of_rollback().label("rollback"), func.count())
        .join(executions, executions.c.id == task_runs.c.execution_id)
        .where(task_runs.c.status == RunStatus.RUNNING)
        .group_by(task_runs.c.type, "rollback")
    )
    counts: Counter[str] = Counter()
    for task_type, rollback, count in conn.execute(query):
        counts[queue_of(task_type, bool(rollback))] += count
    return dict(counts)


@dataclass(frozen=True)
class RunTimes:
    """When a task run started and ended, and how it ended (None while it runs)."""

    started_at: datetime | None
    finished_at: datetime | None
    status: RunStatus


@dataclass(frozen=True)
class Minute:
    """Task runs that started, finished (completed or skipped on the way) and failed in one minute."""

    at: datetime
    started: int = 0
    finished: int = 0
    failed: int = 0


def recent_runs(conn: Connection, since: datetime) -> list[RunTimes]:
    """Runs that started or ended at `since` or later."""
    query = select(task_runs.c.started_at, task_runs.c.finished_at, task_runs.c.status).where(
        or_(task_runs.c.started_at >= since, task_runs.c.finished_at >= since)
    )
    return [RunTimes(row.started_at, row.finished_at, RunStatus(row.status)) for row in conn.execute(query)]


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def window_start(now: datetime, minutes: int = THROUGHPUT_MINUTES) -> datetime:
    """The first minute of the last `minutes`, the current one included."""
    return minute_of(now) - timedelta(minutes=minutes - 1)


def throughput(runs: Iterable[RunTimes], now: datetime, minutes: int = THROUGHPUT_MINUTES) -> list[Minute]:
    """One entry per minute of the last `minutes` (the current one last), counting runs that started, finished
    and failed in it. A run that ended FAILED counts as failed, any other end as finished."""
    first = window_start(now, minutes)
    started: Counter[datetime] = Counter()
    finished: Counter[datetime] = Counter()
    failed: Counter[datetime] = Counter()
    for run in runs:
        if run.started_at is not None:
            started[minute_of(run.started_at)] += 1
        if run.finished_at is not None and run.status.is_terminal:
            ended = failed if run.status is RunStatus.FAILED else finished
            ended[minute_of(run.finished_at)] += 1
    slots = (first + timedelta(minutes=step) for step in range(minutes))
    return [Minute(slot, started[slot], finished[slot], failed[slot]) for slot in slots]
