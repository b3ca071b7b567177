"""The pipeline model: stages of tasks in Code Stream's shape, as plain immutable data.

Building one from a document (and every check on it) lives in `document.py`; this module only holds the
shape and the questions asked of it (which task runs before which).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.notifications import Notifications

TaskKey = tuple[str, str]
"""(stage name, task name): how a task is named inside one pipeline."""


@dataclass(frozen=True)
class RollbackLink:
    """The rollback pipeline to run when a task or stage fails, with its input bindings."""

    pipeline: str
    input: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One task of a stage."""

    name: str
    type: str
    input: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    pre_condition: str | None = None
    ignore_failure: bool = False
    rollback: RollbackLink | None = None


@dataclass(frozen=True)
class Stage:
    """One stage: groups of tasks run one group after the other, the tasks of a group in parallel."""

    name: str
    groups: tuple[tuple[str, ...], ...]
    tasks: Mapping[str, Task]
    rollback: RollbackLink | None = None


@dataclass(frozen=True)
class InputMeta:
    """What `_inputMeta` says of one input."""

    mandatory: bool = False
    description: str = ""


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline."""

    name: str
    project: str
    stages: Mapping[str, Stage]
    stage_order: tuple[str, ...]
    description: str = ""
    enabled: bool = False
    concurrency: int = 10
    input: Mapping[str, Any] = field(default_factory=dict)
    input_meta: Mapping[str, InputMeta] = field(default_factory=dict)
    output: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    notifications: Notifications = field(default_factory=Notifications)
    # Code Stream's CI container host (what CI tasks run in, see `workspace.py`) and pipeline options (GIT_TRIGGER,
    # ...: kept and exported, not used yet).
    workspace: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()

    def task(self, key: TaskKey) -> Task:
        return self.stages[key[0]].tasks[key[1]]

    def ordered_tasks(self) -> Iterator[tuple[int, int, Task, Stage]]:
        """Every task with its stage position and group position, in run order."""
        for stage_position, stage_name in enumerate(self.stage_order):
            stage = self.stages[stage_name]
            for group_position, group in enumerate(stage.groups):
                for task_name in group:
                    yield stage_position, group_position, stage.tasks[task_name], stage

    def position(self, key: TaskKey) -> tuple[int, int]:
        """(stage position, group position) of a task; a task sees the outputs of tasks before it."""
        stage = self.stages[key[0]]
        group = next(index for index, names in enumerate(stage.groups) if key[1] in names)
        return self.stage_order.index(key[0]), group

    def runs_before(self, earlier: TaskKey, later: TaskKey) -> bool:
        """Whether `earlier` has always finished when `later` starts."""
        return self.position(earlier) < self.position(later)

    def mandatory_inputs(self) -> list[str]:
        return [name for name, meta in self.input_meta.items() if meta.mandatory]
