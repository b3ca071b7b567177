"""Stories about statuses and the one table of transitions between them."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from orchestrator.errors import Conflict, InvalidTransition
from orchestrator.status import (
    EXECUTION_ALLOWED,
    RUN_ALLOWED,
    ExecutionStatus,
    RunStatus,
    S,
    check_execution,
    predecessors,
)

E = ExecutionStatus
R = RunStatus

FINISHED_EXECUTIONS = [E.COMPLETED, E.FAILED, E.CANCELED, E.ROLLBACK_COMPLETED, E.ROLLBACK_FAILED]
FINISHED_RUNS = [R.COMPLETED, R.FAILED, R.SKIPPED, R.CANCELED]


def test_every_status_has_a_row_in_its_table() -> None:
    # Given the two tables
    # When they are compared with the statuses
    # Then no status is missing (asking is_terminal of it would fail)
    assert set(EXECUTION_ALLOWED) == set(ExecutionStatus)
    assert set(RUN_ALLOWED) == set(RunStatus)


@pytest.mark.parametrize("finished", FINISHED_EXECUTIONS)
def test_a_finished_execution_changes_status_again_only_when_rolled_back_by_hand(finished: ExecutionStatus) -> None:
    # Given an execution that has ended
    # When anything tries to move it on, even back to RUNNING
    # Then it is terminal and every change is refused, but a manual rollback of one that may have left something
    # deployed (COMPLETED, FAILED, or its rollback FAILED)
    assert finished.is_terminal
    by_hand = finished in (E.COMPLETED, E.FAILED, E.ROLLBACK_FAILED)
    assert finished.rolls_back_by_hand is by_hand
    for new in ExecutionStatus:
        if by_hand and new is E.ROLLING_BACK:
            check_execution(finished, new)
            continue
        with pytest.raises(InvalidTransition):
            check_execution(finished, new)


def test_only_finished_executions_are_terminal() -> None:
    # Given every execution status
    # When each is asked whether it is terminal
    terminal = {status for status in ExecutionStatus if status.is_terminal}
    # Then exactly the ended ones are (ROLLING_BACK is still on its way)
    assert terminal == set(FINISHED_EXECUTIONS)


def test_only_running_and_waiting_executions_have_tasks_moved_on() -> None:
    # Given every execution status
    # When each is asked whether its tasks may be dispatched
    running = {status for status in ExecutionStatus if status.runs_tasks}
    # Then a paused, canceling or rolling-back execution runs none
    assert running == {E.RUNNING, E.WAITING}


def test_a_paused_execution_is_still_in_progress_though_it_runs_no_tasks() -> None:
    # Given every execution status
    # When each is asked whether it is still in progress (its queued runs kept, a failure still rolling it back)
    going = {status for status in ExecutionStatus if status.in_progress}
    # Then running, waiting and paused ones are
    assert going == {E.RUNNING, E.WAITING, E.PAUSED}


def test_a_rolling_back_execution_still_holds_its_concurrency_slot() -> None:
    # Given every execution status
    # When each is asked whether it counts against its pipeline's concurrency
    holding = {status for status in ExecutionStatus if status.holds_slot}
    # Then everything not ended does, rolling back included (it still owns the environment), but not a queued one
    assert holding == {E.RUNNING, E.WAITING, E.PAUSED, E.CANCELING, E.ROLLING_BACK}


def test_a_failing_execution_goes_through_rolling_back_to_a_rollback_outcome() -> None:
    # Given the path an execution takes when a task fails and a rollback covers it
    path = [E.NOT_STARTED, E.RUNNING, E.ROLLING_BACK, E.ROLLBACK_COMPLETED]
    # When each step is checked
    for old, new in itertools.pairwise(path):
        check_execution(old, new)
    # Then all are allowed, but a rolling-back execution cannot claim to have simply completed or be canceled
    for new in (E.COMPLETED, E.FAILED, E.CANCELED, E.RUNNING):
        with pytest.raises(InvalidTransition):
            check_execution(E.ROLLING_BACK, new)


def test_a_canceling_execution_can_only_end_canceled() -> None:
    # Given an execution asked to cancel
    # When it is checked against every other status
    allowed = [new for new in ExecutionStatus if _allowed(check_execution, E.CANCELING, new)]
    # Then CANCELED is the only way out
    assert allowed == [E.CANCELED]


def test_a_paused_execution_resumes_to_running_and_cannot_complete_while_paused() -> None:
    # Given a paused execution
    # When it is resumed (to RUNNING, or WAITING while an approval of it waits), or something tries to complete it
    check_execution(E.PAUSED, E.RUNNING)
    check_execution(E.PAUSED, E.WAITING)  # an approval of it still waits
    # Then resuming is allowed and completing is not
    with pytest.raises(InvalidTransition):
        check_execution(E.PAUSED, E.COMPLETED)


def test_a_refused_transition_names_both_statuses_and_answers_409() -> None:
    # Given a completed execution
    # When it is asked to run again
    with pytest.raises(InvalidTransition) as raised:
        check_execution(E.COMPLETED, E.RUNNING)
    # Then the error says from what to what, and is a conflict
    assert raised.value.message == "an execution cannot go from COMPLETED to RUNNING"
    assert isinstance(raised.value, Conflict)
    assert raised.value.http_status == 409


@pytest.mark.parametrize("finished", FINISHED_RUNS)
def test_a_finished_task_run_cannot_start_again(finished: RunStatus) -> None:
    # Given a task run that has ended
    # When it is asked to run or be queued again
    # Then it is terminal and the store may move it nowhere
    assert finished.is_terminal
    for new in (R.QUEUED, R.RUNNING):
        assert finished not in predecessors(RUN_ALLOWED, new)


def test_the_planner_may_skip_or_fail_a_task_that_never_started() -> None:
    # Given a task run not started yet
    # When its preCondition is false, or cannot be evaluated
    # Then it may go straight to SKIPPED or FAILED
    assert {R.SKIPPED, R.FAILED} <= RUN_ALLOWED[R.NOT_STARTED]
    # But a task that already ran cannot be skipped after the fact
    assert R.SKIPPED not in RUN_ALLOWED[R.RUNNING]


def test_a_polling_task_goes_back_to_queued_for_its_next_attempt() -> None:
    # Given a POLL task that ran and must try again later
    # When it is put back in the queue
    # Then that is allowed, and its next attempt may run
    assert R.QUEUED in RUN_ALLOWED[R.RUNNING] and R.RUNNING in RUN_ALLOWED[R.QUEUED]


def test_predecessors_are_where_the_store_may_move_a_status_from() -> None:
    # Given the statuses an execution may be canceled from
    from_where = predecessors(EXECUTION_ALLOWED, E.CANCELED)
    # Then they are the unfinished ones that may still be stopped, and no finished one
    assert from_where == {E.NOT_STARTED, E.QUEUED, E.RUNNING, E.WAITING, E.PAUSED, E.CANCELING}
    assert not from_where & set(FINISHED_EXECUTIONS)
    # And a rollback outcome may only be reached from ROLLING_BACK
    assert predecessors(EXECUTION_ALLOWED, E.ROLLBACK_COMPLETED) == {E.ROLLING_BACK}


def test_predecessors_and_the_checks_agree_on_every_transition() -> None:
    # Given every pair of execution statuses
    # When the store's WHERE clause (predecessors) and the checks are asked about each
    # Then they agree: the store never performs a change the checks refuse, nor refuses one they allow
    for old, new in itertools.product(ExecutionStatus, repeat=2):
        assert (old in predecessors(EXECUTION_ALLOWED, new)) == _allowed(check_execution, old, new)


def _allowed(check: Callable[[S, S], None], old: S, new: S) -> bool:
    """Whether a check lets a status go from `old` to `new`."""
    try:
        check(old, new)
    except InvalidTransition:
        return False
    return True
