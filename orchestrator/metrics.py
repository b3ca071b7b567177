"""The figures `/metrics` exposes, read from the database at each scrape, so every API process answers the same.

Counters come from what is never rewritten: executions reaching a status are their execution-level events, rollbacks
are child executions, durations are finished task runs. They only grow (until executions are deleted), whichever
process is scraped. The histograms are bucketed here (`histogram`, pure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, distinct, func, select
from sqlalchemy.sql import ColumnElement

from orchestrator.execution import Relation
from orchestrator.schema import events, executions, task_runs
from orchestrator.status import ExecutionStatus, RunStatus

# Upper bounds of the task duration histogram (seconds): a Condition takes milliseconds, a rollout many minutes.
TASK_DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Upper bounds of the failure-to-rollback histogram (seconds): from the failure that started a rollback to its end.
ROLLBACK_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# The `cause` label of a rollback: a failure covered by a rollback link, or a person's request.
CAUSES = {Relation.ROLLBACK.value: "failure", Relation.MANUAL_ROLLBACK.value: "manual"}
Query = TypeVar("Query", bound=Select[Any])
ROLLED_BACK = (ExecutionStatus.ROLLBACK_COMPLETED, ExecutionStatus.ROLLBACK_FAILED)


@dataclass(frozen=True)
class Count:
    """One labelled count: (project, pipeline, what) and how many."""

    project: str
    pipeline: str
    label: str
    value: int


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (one per bound, then +Inf), and the sum of what was observed."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total: float


def histogram(values: Iterable[float], bounds: Sequence[float]) -> Histogram:
    """Prometheus' cumulative buckets of `values` over `bounds`."""
    observed = sorted(values)
    buckets = []
    position = 0
    for bound in bounds:
        while position < len(observed) and observed[position] <= bound:
            position += 1
        buckets.append((bound, position))
    buckets.append((float("inf"), len(observed)))
    return Histogram(tuple(buckets), len(observed), sum(observed))


def _in_project(query: Query, project: str | None, column: ColumnElement[str]) -> Query:
    return query if project is None else query.where(column == project)


def executions_reached(conn: Connection, project: str | None) -> list[Count]:
    """How many executions of each pipeline reached each status (an execution that ran again after a pause counts
    once for RUNNING)."""
    query = (
        select(executions.c.project, executions.c.pipeline_name, events.c.status, func.count(distinct(executions.c.id)))
        .join(events, events.c.execution_id == executions.c.id)
        .where(events.c.task_run_id.is_(None))
        .group_by(executions.c.project, executions.c.pipeline_name, events.c.status)
    )
    return [
        Count(project_, pipeline, status, count)
        for project_, pipeline, status, count in conn.execute(_in_project(query, project, executions.c.project))
    ]


def rollbacks(conn: Connection, project: str | None) -> list[Count]:
    """How many executions of each pipeline were rolled back, by cause (a manual rollback that runs the rollbacks of
    two stages counts once)."""
    child = executions.alias("child")
    query = (
        select(
            executions.c.project, executions.c.pipeline_name, child.c.relation, func.count(distinct(executions.c.id))
        )
        .join(child, child.c.parent_id == executions.c.id)
        .where(child.c.relation.in_(list(CAUSES)))
        .group_by(executions.c.project, executions.c.pipeline_name, child.c.relation)
    )
    return [
        Count(project_, pipeline, CAUSES[relation], count)
        for project_, pipeline, relation, count in conn.execute(_in_project(query, project, executions.c.project))
    ]


def task_durations(conn: Connection, project: str | None) -> dict[str, list[float]]:
    """Seconds each finished task run took (its last attempt's claim to its end), by task type."""
    query = (
        select(task_runs.c.type, task_runs.c.started_at, task_runs.c.finished_at)
        .join(executions, executions.c.id == task_runs.c.execution_id)
        .where(
            task_runs.c.status.in_([RunStatus.COMPLETED, RunStatus.FAILED]),
            task_runs.c.started_at.is_not(None),
            task_runs.c.finished_at.is_not(None),
        )
    )
    found: dict[str, list[float]] = defaultdict(list)
    for task_type, started, finished in conn.execute(_in_project(query, project, executions.c.project)):
        found[task_type].append(_seconds(started, finished))
    return dict(found)


def failure_to_rollback(conn: Connection, project: str | None) -> dict[tuple[str, str], list[float]]:
    """Seconds from the failure that started each rollback (the execution turning ROLLING_BACK) to the rollback's
    end (ROLLBACK_COMPLETED or ROLLBACK_FAILED), by (project, pipeline): the time to restore."""
    first = func.min(events.c.at)
    query = (
        select(executions.c.project, executions.c.pipeline_name, first, executions.c.finished_at)
        .join(events, events.c.execution_id == executions.c.id)
        .where(
            executions.c.status.in_(ROLLED_BACK),
            executions.c.finished_at.is_not(None),
            events.c.task_run_id.is_(None),
            events.c.status == ExecutionStatus.ROLLING_BACK,
        )
        .group_by(executions.c.id, executions.c.project, executions.c.pipeline_name, executions.c.finished_at)
    )
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for project_, pipeline, failed, ended in conn.execute(_in_project(query, project, executions.c.project)):
        found[(project_, pipeline)].append(_seconds(failed, ended))
    return dict(found)


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)
