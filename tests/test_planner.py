"""Stories about the planner: which tasks of an execution start next, and how a stage's status reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import BindingError
from orchestrator.pipeline import Pipeline, Stage, Task, TaskKey
from orchestrator.planner import Plan, is_settled, plan, stage_status
from orchestrator.status import RunStatus

R = RunStatus


def make_pipeline(
    stages: Mapping[str, list[str]],
    pre_conditions: Mapping[str, str] | None = None,
    ignore_failure: frozenset[str] = frozenset(),
) -> Pipeline:
    """A pipeline from {stage: taskOrder} (a comma joins a parallel group); tasks are named uniquely."""
    pre_conditions = pre_conditions or {}
    built = {}
    for stage_name, order in stages.items():
        groups = tuple(tuple(entry.split(",")) for entry in order)
        tasks = {
            name: Task(
                name,
                "Condition",
                {"condition": "true"},
                pre_condition=pre_conditions.get(name),
                ignore_failure=name in ignore_failure,
            )
            for group in groups
            for name in group
        }
        built[stage_name] = Stage(stage_name, groups, tasks)
    return Pipeline(name="p", project="demo", stages=built, stage_order=tuple(stages))


def always(_text: str) -> bool:
    """A preCondition evaluator for pipelines that have none: fails the test if asked."""
    pytest.fail("no preCondition should be evaluated")


def answers(values: Mapping[str, bool], asked: list[str] | None = None) -> Callable[[str], bool]:
    """A preCondition evaluator answering from a table, recording what it was asked."""

    def evaluate(text: str) -> bool:
        if asked is not None:
            asked.append(text)
        return values[text]

    return evaluate


DEPLOY = make_pipeline({"Dev": ["Build", "Test,Scan", "Publish"], "Prod": ["Deploy"]})


def statuses(**by_task: RunStatus) -> dict[TaskKey, RunStatus]:
    """Statuses of DEPLOY's tasks, by task name."""
    stage_of = {name: stage.name for stage in DEPLOY.stages.values() for name in stage.tasks}
    return {(stage_of[name], name): status for name, status in by_task.items()}


# -- what starts


def test_a_new_execution_starts_with_the_first_task_only() -> None:
    # Given an execution where nothing has run
    # When it is planned
    step = plan(DEPLOY, {}, always)
    # Then only the first task starts
    assert step == Plan(start=(("Dev", "Build"),))


def test_the_tasks_of_a_parallel_group_start_together() -> None:
    # Given the first task has completed
    # When the execution is planned
    step = plan(DEPLOY, statuses(Build=R.COMPLETED), always)
    # Then both tasks of the next group start at once
    assert step.start == (("Dev", "Test"), ("Dev", "Scan"))
    assert not step.done


def test_the_next_group_waits_for_the_whole_parallel_group() -> None:
    # Given one task of a parallel group done and the other still running
    current = statuses(Build=R.COMPLETED, Test=R.COMPLETED, Scan=R.RUNNING)
    # When the execution is planned
    step = plan(DEPLOY, current, always)
    # Then nothing starts until the other finishes
    assert step == Plan()


def test_a_running_task_is_not_started_again() -> None:
    # Given the first task queued
    # When the execution is planned again (a second worker reporting, say)
    step = plan(DEPLOY, statuses(Build=R.QUEUED), always)
    # Then nothing is started twice
    assert step == Plan()


def test_the_next_stage_starts_when_the_last_group_of_the_stage_before_has_settled() -> None:
    # Given everything in Dev done except the last task
    current = statuses(Build=R.COMPLETED, Test=R.COMPLETED, Scan=R.COMPLETED, Publish=R.RUNNING)
    # When it is planned, then planned again once that task completes
    waiting = plan(DEPLOY, current, always)
    moving = plan(DEPLOY, current | statuses(Publish=R.COMPLETED), always)
    # Then Prod waits, then starts
    assert waiting.start == ()
    assert moving.start == (("Prod", "Deploy"),)


def test_the_execution_is_done_when_every_task_has_settled() -> None:
    # Given every task completed, skipped or failed with ignoreFailure
    pipeline = make_pipeline({"Dev": ["Build", "Lint"], "Prod": ["Deploy"]}, ignore_failure=frozenset({"Lint"}))
    current = {("Dev", "Build"): R.COMPLETED, ("Dev", "Lint"): R.FAILED, ("Prod", "Deploy"): R.SKIPPED}
    # When it is planned
    step = plan(pipeline, current, always)
    # Then it is done, with nothing to start
    assert step == Plan(done=True)


def test_the_execution_is_not_done_while_its_last_task_runs() -> None:
    # Given everything settled but the last task, which is running
    current = statuses(Build=R.COMPLETED, Test=R.COMPLETED, Scan=R.COMPLETED, Publish=R.COMPLETED, Deploy=R.RUNNING)
    # When it is planned
    # Then it is not done
    assert plan(DEPLOY, current, always) == Plan()


# -- preConditions


def test_a_task_whose_precondition_is_false_is_skipped_and_the_next_one_starts_in_the_same_pass() -> None:
    # Given a task that only runs for tagged builds, with no tag given
    pipeline = make_pipeline({"Dev": ["Tag", "Build"]}, pre_conditions={"Tag": "${input.tag} != ''"})
    # When the new execution is planned
    step = plan(pipeline, {}, answers({"${input.tag} != ''": False}))
    # Then it is skipped, saying why, and the next task starts without waiting for another pass
    assert step.skip == ((("Dev", "Tag"), "preCondition \"${input.tag} != ''\" is false"),)
    assert step.start == (("Dev", "Build"),)


def test_a_whole_stage_of_false_preconditions_is_skipped_and_the_next_stage_starts() -> None:
    # Given a Dev stage whose tasks only run on weekdays, on a Sunday
    pipeline = make_pipeline(
        {"Dev": ["Build", "Test"], "Prod": ["Deploy"]}, pre_conditions={"Build": "weekday", "Test": "weekday"}
    )
    # When the new execution is planned
    step = plan(pipeline, {}, answers({"weekday": False}))
    # Then both are skipped and Prod starts in the same pass
    assert [key for key, _ in step.skip] == [("Dev", "Build"), ("Dev", "Test")]
    assert step.start == (("Prod", "Deploy"),)
    assert not step.done


def test_a_pipeline_of_only_skipped_tasks_is_done_in_one_pass() -> None:
    # Given a pipeline whose only task's preCondition is false
    pipeline = make_pipeline({"Dev": ["Build"]}, pre_conditions={"Build": "false"})
    # When it is planned
    step = plan(pipeline, {}, answers({"false": False}))
    # Then the task is skipped and the execution is done
    assert step.done and step.skip and not step.start


def test_a_true_precondition_starts_the_task() -> None:
    # Given a task whose preCondition holds
    pipeline = make_pipeline({"Dev": ["Build"]}, pre_conditions={"Build": "true"})
    # When it is planned
    # Then it starts
    assert plan(pipeline, {}, answers({"true": True})).start == (("Dev", "Build"),)


def test_a_precondition_that_cannot_be_evaluated_fails_the_task_and_holds_back_the_rest() -> None:
    # Given a task whose preCondition reads an output that does not exist
    pipeline = make_pipeline({"Dev": ["Build", "Publish"]}, pre_conditions={"Build": "${Dev.Gone.output.ok}"})

    def broken(_text: str) -> bool:
        raise BindingError("task 'Dev.Gone' has not completed")

    # When it is planned
    step = plan(pipeline, {}, broken)
    # Then the task fails before it starts, saying why, and what comes after does not start
    assert step.fail == (
        (
            ("Dev", "Build"),
            "preCondition '${Dev.Gone.output.ok}' could not be evaluated: task 'Dev.Gone' has not completed",
        ),
    )
    assert (step.start, step.done) == ((), False)


def test_a_precondition_that_cannot_be_evaluated_on_a_task_that_ignores_failure_lets_the_run_go_on() -> None:
    # Given a task that ignores its failures, whose preCondition cannot be evaluated
    pipeline = make_pipeline(
        {"Dev": ["Notify", "Build"]}, pre_conditions={"Notify": "${var.slack}"}, ignore_failure=frozenset({"Notify"})
    )

    def broken(_text: str) -> bool:
        raise BindingError("no variable")

    # When it is planned
    step = plan(pipeline, {}, broken)
    # Then it fails and the next task starts anyway
    assert [key for key, _ in step.fail] == [("Dev", "Notify")]
    assert step.start == (("Dev", "Build"),)


def test_preconditions_are_only_evaluated_for_tasks_about_to_start() -> None:
    # Given tasks with preConditions, the first already completed
    pipeline = make_pipeline({"Dev": ["Build", "Test", "Publish"]}, pre_conditions={n: n for n in ("Build", "Test")})
    asked: list[str] = []
    # When it is planned
    plan(pipeline, {("Dev", "Build"): R.COMPLETED}, answers({"Build": True, "Test": True}, asked))
    # Then only the next task's preCondition was evaluated
    assert asked == ["Test"]


# -- failures


def test_a_failed_task_that_ignores_failure_lets_the_next_group_start() -> None:
    # Given a failed task that ignores failure, beside a completed one
    pipeline = make_pipeline({"Dev": ["Test,Lint", "Publish"]}, ignore_failure=frozenset({"Lint"}))
    current = {("Dev", "Test"): R.COMPLETED, ("Dev", "Lint"): R.FAILED}
    # When it is planned
    # Then the next group starts
    assert plan(pipeline, current, always).start == (("Dev", "Publish"),)


def test_a_failed_task_that_does_not_ignore_failure_blocks_everything_after_it() -> None:
    # Given a failed task that does not ignore failure
    current = statuses(Build=R.COMPLETED, Test=R.FAILED, Scan=R.COMPLETED)
    # When it is planned
    step = plan(DEPLOY, current, always)
    # Then nothing starts and the execution is not done (the engine decides what a failure means)
    assert step == Plan()


@pytest.mark.parametrize(
    ("status", "ignore", "settled"),
    [
        (R.COMPLETED, False, True),
        (R.SKIPPED, False, True),
        (R.FAILED, True, True),
        (R.FAILED, False, False),
        (R.CANCELED, True, False),
        (R.RUNNING, False, False),
        (R.NOT_STARTED, False, False),
    ],
)
def test_a_task_lets_the_ones_after_it_go_once_it_has_settled(status: RunStatus, ignore: bool, settled: bool) -> None:
    # Given a task in some status, ignoring failure or not
    pipeline = make_pipeline({"Dev": ["Build"]}, ignore_failure=frozenset({"Build"} if ignore else ()))
    # When it is asked whether it has settled
    # Then only completed, skipped and ignored failures have
    assert is_settled(pipeline, ("Dev", "Build"), status) is settled


# -- a stage's status


STAGE = make_pipeline({"Dev": ["Build", "Test,Lint"]}, ignore_failure=frozenset({"Lint"}))
DEV = STAGE.stages["Dev"]


def dev(build: RunStatus, test: RunStatus = R.NOT_STARTED, lint: RunStatus = R.NOT_STARTED) -> RunStatus:
    """The status of the Dev stage whose Build, Test and Lint (ignoring failure) stand as given."""
    return stage_status(STAGE, DEV, {("Dev", "Build"): build, ("Dev", "Test"): test, ("Dev", "Lint"): lint})


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        pytest.param((R.NOT_STARTED,), R.NOT_STARTED, id="not-started"),
        pytest.param((R.QUEUED,), R.RUNNING, id="queued"),
        pytest.param((R.COMPLETED, R.RUNNING, R.COMPLETED), R.RUNNING, id="running"),
        pytest.param((R.COMPLETED,), R.RUNNING, id="between-groups"),
        pytest.param((R.COMPLETED, R.WAITING, R.COMPLETED), R.WAITING, id="waiting"),
        pytest.param((R.COMPLETED, R.FAILED, R.RUNNING), R.FAILED, id="failed-while-sibling-runs"),
        pytest.param((R.COMPLETED, R.COMPLETED, R.FAILED), R.COMPLETED, id="ignored-failure"),
        pytest.param((R.COMPLETED, R.SKIPPED, R.COMPLETED), R.COMPLETED, id="completed-and-skipped"),
        pytest.param((R.SKIPPED, R.SKIPPED, R.SKIPPED), R.SKIPPED, id="all-skipped"),
        pytest.param((R.COMPLETED, R.CANCELED, R.CANCELED), R.CANCELED, id="canceled"),
    ],
)
def test_a_stages_status_is_derived_from_its_tasks(tasks: tuple[RunStatus, ...], expected: RunStatus) -> None:
    # Given the Dev stage's tasks in these statuses
    # When its status is derived
    # Then it reads as an operator expects
    assert dev(*tasks) == expected


def test_a_stage_whose_tasks_have_no_runs_yet_has_not_started() -> None:
    # Given no task run recorded for the stage at all
    # When its status is derived
    # Then it has not started
    assert stage_status(STAGE, DEV, {}) == R.NOT_STARTED


# -- whatever the statuses, the order holds


SHAPES = st.lists(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=3), min_size=1, max_size=3)
ANY_STATUS = st.sampled_from([R.NOT_STARTED, R.QUEUED, R.RUNNING, R.COMPLETED, R.FAILED, R.SKIPPED])


@settings(max_examples=200, deadline=None)
@given(SHAPES, st.data())
def test_a_task_only_ever_starts_once_everything_before_it_has_settled(
    shape: list[list[int]], data: st.DataObject
) -> None:
    # Given any pipeline shape, some tasks ignoring failure, and any statuses its tasks may stand at
    stages = {
        f"S{s}": [",".join(f"S{s}G{g}T{t}" for t in range(size)) for g, size in enumerate(groups)]
        for s, groups in enumerate(shape)
    }
    names = [name for order in stages.values() for entry in order for name in entry.split(",")]
    ignoring = frozenset(data.draw(st.sets(st.sampled_from(names))))
    pipeline = make_pipeline(stages, ignore_failure=ignoring)
    keys = [(stage_name, name) for stage_name, order in stages.items() for e in order for name in e.split(",")]
    current = {key: data.draw(ANY_STATUS) for key in keys}
    # When it is planned
    step = plan(pipeline, current, always)
    # Then only tasks not started yet start, and only once every task before them has settled
    for key in step.start:
        assert current[key] is R.NOT_STARTED
        assert all(is_settled(pipeline, other, current[other]) for other in keys if pipeline.runs_before(other, key))
    # And it is done exactly when every task has settled
    assert step.done == all(is_settled(pipeline, key, current[key]) for key in keys)
