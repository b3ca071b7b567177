"""The planner: which tasks of an execution are ready to run, given what has run so far.

A pure function of the pipeline and the task runs' statuses. Stages run one after the other; within a
stage, the groups of `taskOrder` run one after the other and the tasks of a group in parallel. A task whose
`preCondition` is false is skipped, and planning goes on as if it had finished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.errors import RollwayError
from orchestrator.pipeline import Pipeline, Stage, TaskKey
from orchestrator.status import RunStatus

PreCondition = Callable[[str], bool]
"""Evaluates a preCondition expression against the execution so far; raises RollwayError if it cannot."""


@dataclass(frozen=True)
class Plan:
    """What to do next: tasks to start, tasks to skip or fail before they start, and whether all is done."""

    start: tuple[TaskKey, ...] = ()
    skip: tuple[tuple[TaskKey, str], ...] = ()
    fail: tuple[tuple[TaskKey, str], ...] = ()
    done: bool = False


def is_settled(pipeline: Pipeline, key: TaskKey, status: RunStatus) -> bool:
    """Whether a task run lets the tasks after it go: it completed, was skipped, or failed with ignoreFailure."""
    if status is RunStatus.FAILED:
        return pipeline.task(key).ignore_failure
    return status in (RunStatus.COMPLETED, RunStatus.SKIPPED)


def plan(pipeline: Pipeline, statuses: Mapping[TaskKey, RunStatus], precondition: PreCondition) -> Plan:
    """The next step of an execution whose task runs stand at `statuses`."""
    current = dict(statuses)
    start: list[TaskKey] = []
    skip: list[tuple[TaskKey, str]] = []
    fail: list[tuple[TaskKey, str]] = []
    for stage_name in pipeline.stage_order:
        stage = pipeline.stages[stage_name]
        for group in stage.groups:
            keys = [(stage_name, name) for name in group]
            for key in keys:
                if current.get(key, RunStatus.NOT_STARTED) is RunStatus.NOT_STARTED:
                    decision = _decide(pipeline, key, precondition)
                    if decision is None:
                        start.append(key)
                        current[key] = RunStatus.QUEUED
                    elif decision[0] is RunStatus.SKIPPED:
                        skip.append((key, decision[1]))
                        current[key] = RunStatus.SKIPPED
                    else:
                        fail.append((key, decision[1]))
                        current[key] = RunStatus.FAILED
            if not all(is_settled(pipeline, key, current[key]) for key in keys):
                return Plan(tuple(start), tuple(skip), tuple(fail))
    return Plan(tuple(start), tuple(skip), tuple(fail), done=True)


def _decide(pipeline: Pipeline, key: TaskKey, precondition: PreCondition) -> tuple[RunStatus, str] | None:
    """None to start the task, else the status it takes instead and why."""
    condition = pipeline.task(key).pre_condition
    if condition is None:
        return None
    try:
        holds = precondition(condition)
    except RollwayError as error:
        return RunStatus.FAILED, f"preCondition {condition!r} could not be evaluated: {error.message}"
    return None if holds else (RunStatus.SKIPPED, f"preCondition {condition!r} is false")


def stage_status(pipeline: Pipeline, stage: Stage, statuses: Mapping[TaskKey, RunStatus]) -> RunStatus:
    """A stage's status, derived from its task runs (stages keep no status of their own)."""
    keyed = {(stage.name, name): statuses.get((stage.name, name), RunStatus.NOT_STARTED) for name in stage.tasks}
    values = set(keyed.values())
    if any(status is RunStatus.FAILED and not pipeline.task(key).ignore_failure for key, status in keyed.items()):
        return RunStatus.FAILED
    if RunStatus.CANCELED in values:
        return RunStatus.CANCELED
    if values & {RunStatus.QUEUED, RunStatus.RUNNING}:
        return RunStatus.RUNNING
    if RunStatus.WAITING in values:
        return RunStatus.WAITING
    if values == {RunStatus.SKIPPED}:
        return RunStatus.SKIPPED
    if all(is_settled(pipeline, key, status) for key, status in keyed.items()):
        return RunStatus.COMPLETED
    return RunStatus.NOT_STARTED if values == {RunStatus.NOT_STARTED} else RunStatus.RUNNING
