"""Executions and their task runs as the store records them: plain immutable data.

`ExecutionState` is an execution with all its task runs and its pipeline snapshot: what the engine's
pure decisions (planner, rollback policy, bindings) are computed from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.bindings import Scope
from orchestrator.pipeline import Pipeline, TaskKey
from orchestrator.status import ExecutionStatus, RunStatus


@dataclass(frozen=True)
class PipelineRecord:
    """A saved pipeline."""

    id: str
    pipeline: Pipeline
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def project(self) -> str:
        return self.pipeline.project


class Relation(StrEnum):
    """How a child execution is linked to its parent (`Execution.parent_id`); a top-level execution has none."""

    ROLLBACK = "rollback"
    """Started by the engine when a task of the parent failed and a rollback link covered it."""
    NESTED = "nested"
    """Started by a Pipeline task of the parent."""
    MANUAL_ROLLBACK = "manual_rollback"
    """One of the rollbacks a person asked for (`POST /api/executions/<id>/rollback`), run newest stage first."""

    @property
    def rolls_back(self) -> bool:
        """A child of this kind puts its parent's environment back: its tasks go to the rollback queue, its own
        failures roll nothing further back, and how it ends settles its ROLLING_BACK parent."""
        return self in ROLLS_BACK


ROLLS_BACK = frozenset({Relation.ROLLBACK, Relation.MANUAL_ROLLBACK})


@dataclass(frozen=True)
class Execution:
    """One run of a pipeline."""

    id: str
    pipeline_id: str | None
    pipeline_name: str
    project: str
    index: int
    status: ExecutionStatus
    status_message: str
    comments: str
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    parent_id: str | None
    relation: Relation | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    requested_by_admin: bool = False
    """Whether whoever started it was an admin of its project (a rollback inherits it from the execution it rolls
    back): a non-admin's task that uses a RESTRICTED variable or a restricted endpoint waits for an admin."""
    cause: str = ""
    """Why it is (or was last) rolling back, e.g. the task that failed: its outcome's message starts with it."""

    @property
    def rollback(self) -> bool:
        """It is a rollback (automatic or manual) of its parent."""
        return self.relation is not None and self.relation.rolls_back


@dataclass(frozen=True)
class Child:
    """What a parent's view shows of one of its child executions."""

    id: str
    parent_id: str
    pipeline_name: str
    index: int
    relation: Relation
    status: ExecutionStatus
    status_message: str
    created_at: datetime
    started_at: datetime | None


@dataclass(frozen=True)
class TaskRun:
    """One run of one task of an execution.

    `attempt` counts dispatches: a POLL that waits is dispatched again with the next attempt, and a worker
    only claims the run for the attempt its message names, so a redelivered message never runs it twice.
    `input` and `bindings` are set when the run is queued (see `inputs.py`); `state` is what an executor
    keeps between attempts.
    """

    id: str
    execution_id: str
    stage: str
    name: str
    type: str
    status: RunStatus
    status_message: str
    input: Mapping[str, Any] | None
    output: Mapping[str, Any] | None
    bindings: Mapping[str, Any]
    endpoints: Mapping[str, str]
    state: Mapping[str, Any]
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    dispatch_after: datetime | None = None
    sent_at: datetime | None = None
    lease_expires_at: datetime | None = None
    worker: str = ""
    """Who holds (or last held) the run's lease: the worker node, its process and the claim."""
    sealed_input: str | None = None
    """The full input and bindings, sealed, when `input` and `bindings` had secrets masked (see `sealing.py`)."""

    @property
    def key(self) -> TaskKey:
        return (self.stage, self.name)


@dataclass(frozen=True)
class Event:
    """One recorded status change of an execution or of one of its task runs."""

    at: datetime
    execution_id: str
    task_run_id: str | None
    stage: str | None
    task: str | None
    previous: str | None
    status: str
    message: str
    actor: str


@dataclass(frozen=True)
class RunSummary:
    """What decisions need of a task run: where it stands and what it output (not its input or state)."""

    id: str
    stage: str
    name: str
    status: RunStatus
    status_message: str
    output: Mapping[str, Any] | None
    started_at: datetime | None = None

    @property
    def key(self) -> TaskKey:
        return (self.stage, self.name)


@dataclass(frozen=True)
class ExecutionState:
    """An execution, its pipeline snapshot and a summary of every task run: what decisions are made from."""

    execution: Execution
    pipeline: Pipeline
    runs: Mapping[TaskKey, RunSummary]

    def statuses(self) -> dict[TaskKey, RunStatus]:
        return {key: run.status for key, run in self.runs.items()}

    def scope(self, variables: Mapping[str, object] | None = None) -> Scope:
        """What bindings see: the input, the output of every task run that recorded one, and the project's
        `variables` (none when not given)."""
        execution = self.execution
        return Scope(
            input=execution.input,
            outputs={key: run.output for key, run in self.runs.items() if run.output is not None},
            execution_id=execution.id,
            execution_index=execution.index,
            requested_by=execution.requested_by,
            variables={} if variables is None else variables,
            pipeline_name=self.pipeline.name,
            status=execution.status.value,
            statuses={key: run.status.value for key, run in self.runs.items()},
            task_inputs={key: self.pipeline.task(key).input for key in self.runs if _has_task(self.pipeline, key)},
        )


def _has_task(pipeline: Pipeline, key: TaskKey) -> bool:
    """Whether the pipeline holds a task of that key (a run of a task a newer version dropped has none)."""
    stage = pipeline.stages.get(key[0])
    return stage is not None and key[1] in stage.tasks
