"""Retry backoff as plain arithmetic: the waits, the budget's end, a server's Retry-After and its cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.retry import RETRY_AFTER_CAP, RETRY_BUDGET, Backoff


def waits_until_spent(backoff: Backoff, retry_after: float | None = None) -> list[float]:
    """Every wait of a streak whose retries all fail at once, as the executor would answer them."""
    waits: list[float] = []
    elapsed = 0.0
    while (wait := backoff.wait(len(waits) + 1, elapsed, retry_after)) is not None:
        waits.append(wait)
        elapsed += wait
    return waits


def test_the_default_budget_is_about_two_minutes() -> None:
    # Given the default backoff
    backoff = Backoff()

    # Then its budget is the named two-minute constant: longer than a control-plane restart
    assert backoff.budget == RETRY_BUDGET == 120.0

    # When every retry fails, Then the waits add up to the budget exactly, and the streak stops there
    waits = waits_until_spent(backoff)
    assert sum(waits) == pytest.approx(120.0)
    assert len(waits) == 12


def test_waits_double_from_half_a_second_up_to_the_cap() -> None:
    # Given the default backoff
    backoff = Backoff()

    # When the first waits are asked for, Then they double from 0.5 s and stop growing at 15 s
    assert [backoff.delay(retry) for retry in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]

    # And a huge retry count is still the cap, not an overflow
    assert backoff.delay(10_000) == 15.0


def test_no_wait_runs_past_the_end_of_the_budget() -> None:
    # Given a 10 s budget
    backoff = Backoff(budget=10.0)

    # When 9 s have passed since the first failure, Then the next retry comes as the budget runs out
    assert backoff.wait(5, elapsed=9.0) == 1.0

    # When the budget is spent, Then there is no next retry
    assert backoff.wait(6, elapsed=10.0) is None
    assert backoff.wait(6, elapsed=11.5) is None

    # And a streak that fails every time waits 0.5, 1, 2, 4, then what is left
    assert waits_until_spent(backoff) == [0.5, 1.0, 2.0, 4.0, 2.5]


def test_a_longer_retry_after_is_honoured_and_a_shorter_one_does_not_shorten_the_backoff() -> None:
    # Given the default backoff
    backoff = Backoff()

    # When the server asks for 2 s on the first retry, Then the wait is 2 s, not 0.5 s
    assert backoff.wait(1, 0.0, retry_after=2.0) == 2.0

    # When it asks for 2 s on the fifth, Then the backoff's 8 s stands
    assert backoff.wait(5, 0.0, retry_after=2.0) == 8.0

    # When it asks for nothing at all, Then the backoff stands
    assert backoff.wait(1, 0.0, retry_after=0.0) == 0.5


def test_retry_after_is_capped_and_bounded_by_the_budget() -> None:
    # Given the default backoff
    backoff = Backoff()

    # When the server asks for an hour, Then the wait is the cap
    assert backoff.delay(1, retry_after=3600.0) == RETRY_AFTER_CAP == 60.0

    # When it asks for 30 s with 2 s of budget left, Then the wait is those 2 s
    assert backoff.wait(3, elapsed=118.0, retry_after=30.0) == 2.0


def test_a_clock_behind_the_first_failure_counts_as_no_time_passed() -> None:
    # Given a worker whose clock is behind the one that saw the first failure
    backoff = Backoff(budget=10.0)

    # When the time passed comes out negative, Then it is the start of the streak, not extra budget
    assert backoff.wait(1, elapsed=-50.0) == 0.5
    assert waits_until_spent(backoff)[-1] == 2.5


def test_retries_are_counted_from_one() -> None:
    # When a retry number below 1 is asked for, Then it is a caller's bug, said out loud
    with pytest.raises(ValueError, match="retries are counted from 1, not 0"):
        Backoff().delay(0)


@given(
    retry=st.integers(min_value=1, max_value=1000),
    elapsed=st.floats(min_value=-1e6, max_value=1e6),
    retry_after=st.none() | st.floats(min_value=-1e6, max_value=1e6),
)
def test_every_wait_is_positive_within_the_budget_and_the_caps(
    retry: int, elapsed: float, retry_after: float | None
) -> None:
    # Given the default backoff
    backoff = Backoff()

    # When any retry is asked for at any time, with or without a Retry-After
    wait = backoff.wait(retry, elapsed, retry_after)

    # Then there is none once the budget is spent, and otherwise it is positive, ends within the budget,
    # and is held below the larger of the two caps
    if elapsed >= backoff.budget:
        assert wait is None
    else:
        assert wait is not None
        assert 0 < wait <= backoff.budget - max(elapsed, 0.0)
        assert wait <= max(backoff.cap, backoff.retry_after_cap)
