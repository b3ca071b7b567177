"""The rollback policy: for a failed task, which rollback pipeline runs, with which input and comments; for a
manual rollback, which ones run and in which order; and, as a parent's rollbacks end, what happens next.

Pure decisions over the pipeline and the execution's recorded state; the engine carries them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from orchestrator.bindings import Scope, resolve
from orchestrator.execution import Child, RunSummary
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
    comments = (
        f"Rollback of {pipeline.name} #{scope.execution_index} (execution {scope.execution_id}): "
        f"task '{key[1]}' in stage '{key[0]}' failed: {reason}"
    )
    return RollbackPlan(pipeline=link.pipeline, input=_bound(link, scope), comments=comments, linked_from=where)


def _bound(link: RollbackLink, scope: Scope) -> dict[str, Any]:
    """A link's input resolved against the execution's recorded state, leniently (see `plan_rollback`)."""
    bound = resolve(dict(link.input), replace(scope, lenient=True).lookup)
    assert isinstance(bound, dict)
    return bound


def plan_manual_rollback(
    pipeline: Pipeline, runs: Mapping[TaskKey, RunSummary], scope: Scope, requested_by: str
) -> list[RollbackPlan]:
    """The rollbacks a person's rollback of an ended execution runs, one after the other, newest stage first.

    A stage counts when one of its tasks started. Its rollback is the link that covers its newest started task
    (that task's own, else its stage's: what would have run had that task failed), or failing that of the task
    started before it: one rollback per stage, since running two rollbacks of one environment could undo the
    first. Stages without a link are left as they are. Input is bound as an automatic rollback binds it.
    """
    started: dict[str, list[tuple[datetime, tuple[int, int], TaskKey]]] = {}
    for key, run in runs.items():
        if run.started_at is not None:
            started.setdefault(key[0], []).append((run.started_at, pipeline.position(key), key))
    newest_first = sorted(started.values(), key=max, reverse=True)
    links = [found for stage in newest_first if (found := _stage_link(pipeline, stage)) is not None]
    plans = []
    for number, (key, link, where) in enumerate(links, start=1):
        comments = (
            f"Manual rollback of {pipeline.name} #{scope.execution_index} (execution {scope.execution_id}) "
            f"requested by {requested_by or 'a user'}: stage '{key[0]}' ({number} of {len(links)})"
        )
        plans.append(RollbackPlan(link.pipeline, _bound(link, scope), comments, where))
    return plans


def _stage_link(
    pipeline: Pipeline, started: list[tuple[datetime, tuple[int, int], TaskKey]]
) -> tuple[TaskKey, RollbackLink, str] | None:
    for _, _, key in sorted(started, reverse=True):
        found = link_for(pipeline, key)
        if found is not None:
            return key, *found
    return None


@dataclass(frozen=True)
class RollbackStep:
    """What a ROLLING_BACK parent does next: start the rollback `start`, or end as `outcome` with `message`,
    leaving the rollbacks `not_started` unrun (they are canceled); neither: its current rollback still runs."""

    start: str | None = None
    outcome: ExecutionStatus | None = None
    message: str = ""
    not_started: tuple[Child, ...] = ()


def next_step(rollbacks: Sequence[Child]) -> RollbackStep:
    """The next step of a parent from its rollback children, oldest first.

    The current rollback is the newest that has left NOT_STARTED (earlier ones are from before, such as a failed
    rollback this manual one retries). Completed, the next NOT_STARTED one after it starts, or the parent ends
    ROLLBACK_COMPLETED when none is left; ended otherwise, the parent ends ROLLBACK_FAILED and the rest never run.
    The same children always give the same step, so a step lost with its process is simply taken again.
    """
    moved = [position for position, child in enumerate(rollbacks) if child.status is not ExecutionStatus.NOT_STARTED]
    if not moved:
        return RollbackStep(start=rollbacks[0].id) if rollbacks else RollbackStep()
    current = rollbacks[moved[-1]]
    if not current.status.is_terminal:
        return RollbackStep()
    rest = tuple(child for child in rollbacks[moved[-1] + 1 :] if child.status is ExecutionStatus.NOT_STARTED)
    ended = f"rollback {current.pipeline_name} #{current.index} {current.status}"
    if current.status_message:
        ended += f" ({current.status_message})"
    if current.status is ExecutionStatus.COMPLETED:
        if rest:
            return RollbackStep(start=rest[0].id)
        return RollbackStep(outcome=ExecutionStatus.ROLLBACK_COMPLETED, message=ended)
    if rest:
        ended += "; not started: " + ", ".join(f"{child.pipeline_name} #{child.index}" for child in rest)
    return RollbackStep(outcome=ExecutionStatus.ROLLBACK_FAILED, message=ended, not_started=rest)
