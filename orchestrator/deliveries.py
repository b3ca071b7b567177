"""Delivery metrics of a pipeline over a period, as Code Stream's dashboard shows them: pure arithmetic over the
period's top-level executions (a rollback or nested child is part of its parent's delivery, not one of its own).

An execution's outcome as a delivery:

- **delivered**: COMPLETED.
- **failed**: FAILED, ROLLBACK_COMPLETED, ROLLBACK_FAILED. A rollback that put the environment back is still a
  failed delivery: what was asked for never reached the environment.
- **canceled**: CANCELED. Neither delivered nor failed, so it counts in no rate and no metric.
- **unfinished**: every other status (queued, running, waiting, paused, rolling back): not yet an outcome.

A delivery happens when its execution finishes (`finished_at`); deliveries are ordered by that time.

- **Success rate**: delivered / (delivered + failed). Canceled and unfinished executions are left out.
- **MTTD**, mean time to delivery: the mean of `finished_at - started_at` over the delivered executions.
- **MTBD**, mean time between deliveries: the mean gap between the finish times of consecutive delivered
  executions (it needs two).
- **MTTF**, mean time to failure: the mean time from a successful delivery to the next failed one. A run of
  successes is timed from its first success (how long the pipeline kept delivering before it failed); a run that
  no failure ends within the period is not counted.
- **MTTR**, mean time to recovery: the mean time from a failed delivery to the next successful one, a run of
  failures timed from its first failure (how long the pipeline was broken); a run no success ends is not counted.

A metric with nothing to measure is None ("no data"), never zero: an empty period did not deliver instantly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import NamedTuple

from orchestrator.status import ExecutionStatus


class Outcome(StrEnum):
    """What an execution amounts to as a delivery."""

    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELED = "canceled"
    UNFINISHED = "unfinished"


OUTCOMES: dict[ExecutionStatus, Outcome] = {
    ExecutionStatus.COMPLETED: Outcome.DELIVERED,
    ExecutionStatus.FAILED: Outcome.FAILED,
    ExecutionStatus.ROLLBACK_COMPLETED: Outcome.FAILED,
    ExecutionStatus.ROLLBACK_FAILED: Outcome.FAILED,
    ExecutionStatus.CANCELED: Outcome.CANCELED,
}


def outcome_of(status: ExecutionStatus) -> Outcome:
    """The delivery outcome of an execution in `status`."""
    return OUTCOMES.get(status, Outcome.UNFINISHED)


@dataclass(frozen=True)
class Run:
    """One top-level execution of a pipeline, as much as the metrics need of it."""

    status: ExecutionStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.status)


@dataclass(frozen=True)
class Deliveries:
    """A pipeline's delivery figures for one period; a None metric means "no data"."""

    counts: dict[ExecutionStatus, int]
    success_rate: float | None
    mttd: timedelta | None
    mtbd: timedelta | None
    mttf: timedelta | None
    mttr: timedelta | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Day:
    """How many executions asked for on one (UTC) day came to each outcome."""

    day: date
    outcomes: dict[Outcome, int]

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def deliveries(runs: Iterable[Run]) -> Deliveries:
    """The figures of `runs` (one pipeline's top-level executions of a period, in any order)."""
    runs = list(runs)
    counts = Counter(run.status for run in runs)
    ended = sorted(
        (
            _Ended(run.finished_at, run.outcome, run.started_at)
            for run in runs
            if run.finished_at is not None and run.outcome in (Outcome.DELIVERED, Outcome.FAILED)
        ),
        key=lambda end: end.at,
    )
    delivered = [end for end in ended if end.outcome is Outcome.DELIVERED]
    return Deliveries(
        counts={status: counts[status] for status in ExecutionStatus if counts[status]},
        success_rate=len(delivered) / len(ended) if ended else None,
        mttd=_mean([end.at - end.started_at for end in delivered if end.started_at is not None]),
        mtbd=_mean([later.at - earlier.at for earlier, later in pairwise(delivered)]),
        mttf=_mean(_streaks(ended, Outcome.DELIVERED)),
        mttr=_mean(_streaks(ended, Outcome.FAILED)),
    )


def per_day(runs: Iterable[Run], since: datetime, until: datetime) -> list[Day]:
    """Executions by outcome for each UTC day of [since, until), by the day each was asked for; every day is
    listed, with or without executions."""
    first, last = _day(since), _day(until - timedelta(microseconds=1))
    by_day: dict[date, Counter[Outcome]] = {
        first + timedelta(days=offset): Counter() for offset in range((last - first).days + 1)
    }
    for run in runs:
        bucket = by_day.get(_day(run.created_at))
        if bucket is not None:
            bucket[run.outcome] += 1
    return [Day(day, {outcome: counts[outcome] for outcome in Outcome}) for day, counts in by_day.items()]


class _Ended(NamedTuple):
    at: datetime
    outcome: Outcome
    started_at: datetime | None


def _streaks(ended: Sequence[_Ended], kind: Outcome) -> list[timedelta]:
    """For each run of `kind` outcomes that a different outcome ends: from the run's first finish to the finish of
    the execution that ended it."""
    spans = []
    began: datetime | None = None
    for end in ended:
        if end.outcome is kind:
            began = began or end.at
        elif began is not None:
            spans.append(end.at - began)
            began = None
    return spans


def _day(moment: datetime) -> date:
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _mean(spans: Sequence[timedelta]) -> timedelta | None:
    return sum(spans, timedelta()) / len(spans) if spans else None
