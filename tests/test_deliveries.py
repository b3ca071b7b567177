"""Delivery metrics over hand-computed periods: counts, success rate, MTTD, MTBD, MTTF, MTTR; what a rollback,
a cancel and a run still going count as; and "no data" (None), never zero, where nothing can be measured."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from orchestrator.deliveries import Outcome, Run, deliveries, outcome_of, per_day
from orchestrator.status import ExecutionStatus as S

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def run(status: S, started: float | None, finished: float | None) -> Run:
    """An execution asked for and started `started` minutes after T0 and finished `finished` minutes after."""
    created = T0 + minutes(started or 0)
    return Run(
        status,
        created,
        None if started is None else T0 + minutes(started),
        None if finished is None else T0 + minutes(finished),
    )


def test_two_deliveries_around_a_rolled_back_one() -> None:
    # Given: delivered in 10 min, then a failure rolled back at 1 h, then delivered in 20 min at 2 h 20
    runs = [run(S.COMPLETED, 0, 10), run(S.ROLLBACK_COMPLETED, 50, 60), run(S.COMPLETED, 120, 140)]

    # When
    figures = deliveries(runs)

    # Then
    assert figures.counts == {S.COMPLETED: 2, S.ROLLBACK_COMPLETED: 1}
    assert figures.total == 3
    assert figures.success_rate == pytest.approx(2 / 3)
    assert figures.mttd == minutes(15)  # (10 + 20) / 2
    assert figures.mtbd == minutes(130)  # 140 - 10
    assert figures.mttf == minutes(50)  # delivered at 10, failed at 60
    assert figures.mttr == minutes(80)  # failed at 60, delivered again at 140


def test_streaks_are_timed_from_their_first_execution_and_an_open_one_is_not_counted() -> None:
    # Given: S 0, S 60, F 180, F 240, S 360, F 420 (finish minutes; each took 5 minutes)
    shape = [(S.COMPLETED, 0), (S.COMPLETED, 60), (S.FAILED, 180), (S.ROLLBACK_FAILED, 240)]
    shape += [(S.COMPLETED, 360), (S.ROLLBACK_COMPLETED, 420)]
    runs = [run(status, end - 5, end) for status, end in shape]
    random.Random(7).shuffle(runs)

    # When
    figures = deliveries(runs)

    # Then
    assert figures.success_rate == pytest.approx(3 / 6)
    assert figures.mttd == minutes(5)
    assert figures.mtbd == minutes(180)  # gaps 60 and 300
    assert figures.mttf == minutes(120)  # 0 -> 180 and 360 -> 420
    assert figures.mttr == minutes(180)  # 180 -> 360; the failure at 420 has not recovered yet


def test_a_cancel_counts_neither_way_and_a_running_execution_is_not_an_outcome_yet() -> None:
    # Given
    runs = [run(S.COMPLETED, 0, 10), run(S.CANCELED, 20, 30), run(S.FAILED, 40, 70), run(S.RUNNING, 80, None)]

    # When
    figures = deliveries(runs)

    # Then
    assert figures.counts == {S.RUNNING: 1, S.CANCELED: 1, S.COMPLETED: 1, S.FAILED: 1}
    assert figures.success_rate == pytest.approx(1 / 2)
    assert figures.mttf == minutes(60)  # the cancel at 30 neither ends the good streak nor starts a bad one
    assert figures.mttr is None
    assert figures.mtbd is None


def test_an_empty_period_has_no_data_rather_than_zeros() -> None:
    figures = deliveries([])

    assert figures.counts == {}
    assert figures.total == 0
    assert (figures.success_rate, figures.mttd, figures.mtbd, figures.mttf, figures.mttr) == (None,) * 5


def test_a_single_delivery_has_a_time_to_delivery_and_nothing_else() -> None:
    figures = deliveries([run(S.COMPLETED, 0, 7)])

    assert figures.success_rate == 1.0
    assert figures.mttd == minutes(7)
    assert (figures.mtbd, figures.mttf, figures.mttr) == (None, None, None)


def test_a_single_failure_is_a_zero_success_rate_and_no_metric() -> None:
    figures = deliveries([run(S.ROLLBACK_COMPLETED, 0, 7)])

    assert figures.success_rate == 0.0
    assert (figures.mttd, figures.mtbd, figures.mttf, figures.mttr) == (None,) * 4


def test_only_canceled_or_unfinished_executions_give_no_success_rate() -> None:
    figures = deliveries([run(S.CANCELED, 0, 1), run(S.QUEUED, None, None), run(S.ROLLING_BACK, 2, None)])

    assert figures.total == 3
    assert figures.success_rate is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (S.COMPLETED, Outcome.DELIVERED),
        (S.FAILED, Outcome.FAILED),
        (S.ROLLBACK_COMPLETED, Outcome.FAILED),
        (S.ROLLBACK_FAILED, Outcome.FAILED),
        (S.CANCELED, Outcome.CANCELED),
        (S.ROLLING_BACK, Outcome.UNFINISHED),
        (S.WAITING, Outcome.UNFINISHED),
    ],
)
def test_what_each_status_is_as_a_delivery(status: S, outcome: Outcome) -> None:
    assert outcome_of(status) is outcome


def test_per_day_lists_every_day_of_the_period_by_outcome() -> None:
    # Given: the 24 hours from 1 December 12:00 (two calendar days)
    since = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    until = since + timedelta(hours=24)
    runs = [
        Run(S.COMPLETED, since + timedelta(hours=1), None, None),
        Run(S.ROLLBACK_COMPLETED, since + timedelta(hours=2), None, None),
        Run(S.COMPLETED, since + timedelta(hours=13), None, None),
        Run(S.CANCELED, since + timedelta(hours=14), None, None),
        Run(S.COMPLETED, since - timedelta(days=3), None, None),
    ]

    # When
    days = per_day(runs, since, until)

    # Then
    assert [day.day for day in days] == [date(2026, 12, 1), date(2026, 12, 2)]
    assert days[0].outcomes == {Outcome.DELIVERED: 1, Outcome.FAILED: 1, Outcome.CANCELED: 0, Outcome.UNFINISHED: 0}
    assert days[1].outcomes[Outcome.DELIVERED] == 1 and days[1].outcomes[Outcome.CANCELED] == 1
    assert sum(day.total for day in days) == 4, "an execution outside the period is not counted"


def test_per_day_of_whole_days_has_no_extra_day() -> None:
    since = datetime(2026, 12, 1, tzinfo=UTC)

    days = per_day([], since, since + timedelta(days=7))

    assert len(days) == 7 and days[-1].day == date(2026, 12, 7)
    assert all(day.total == 0 for day in days)
