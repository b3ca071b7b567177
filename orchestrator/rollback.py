"""The rollback policy: for a failed task, which rollback pipeline runs, with which input and comments.

Pure decisions over the pipeline and the failed execution's recorded state; the engine carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from orchestrator.bindings import Scope, resolve
from orchestrator.pipeline import Pipeline, RollbackLink, TaskKey
from orchestrator.status import ExecutionStatus


@dataclass(frozen=True)
class RollbackPlan:
    """A rollback to start: the pipeline to run, its bound input, and the comments naming the trigger."""

    pipeline: str
    input: dict[str, Any]
    comments: str
    linked_from: str


def link_for(pipeline: Pipeline, key: TaskKey) -> tuple[RollbackLink, str] | None:
    """The rollback link that covers a failed task, and where it was found; a task's link wins over its stage's."""
    task = pipeline.task(key)
    if task.rollback is not None:
        return task.rollback, "task"
    stage = pipeline.stages[key[0]]
    if stage.rollback is not None:
        return stage.rollback, "stage"
    return None


def plan_rollback(pipeline: Pipeline, key: TaskKey, reason: str, scope: Scope) -> RollbackPlan | None:
    """What to run after `key` failed for `reason`, or None when no rollback covers it.

    Input bindings are resolved leniently: the failure may come before a task the rollback reads from has
    run, and a rollback that starts with an empty value is better than no rollback at all.
    """
    found = link_for(pipeline, key)
    if found is None:
        return None
    link, where = found
    lenient = replace(scope, lenient=True)
    bound = resolve(dict(link.input), lenient.lookup)
    assert isinstance(bound, dict)
    comments = (
        f"Rollback of {pipeline.name} #{scope.execution_index} (execution {scope.execution_id}): "
        f"task '{key[1]}' in stage '{key[0]}' failed: {reason}"
    )
    return RollbackPlan(pipeline=link.pipeline, input=bound, comments=comments, linked_from=where)


def parent_outcome(rollback_status: ExecutionStatus) -> ExecutionStatus:
    """The status a rolled-back execution ends in, from how its rollback execution ended."""
    if rollback_status is ExecutionStatus.COMPLETED:
        return ExecutionStatus.ROLLBACK_COMPLETED
    return ExecutionStatus.ROLLBACK_FAILED
