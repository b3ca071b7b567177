"""What an executor is given and what it answers: the contract between the worker and each task type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.errors import BindingError


@dataclass(frozen=True)
class TaskCall:
    """One attempt at a task: its resolved input, the bindings its expressions read, and what the last
    attempt kept.

    Expression fields of the input (a Condition's `condition`, a POLL's `exitCriteria`) are left as
    written; the executor evaluates them, looking pipeline references up with `lookup`.
    """

    type: str
    input: Mapping[str, Any]
    bindings: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    state: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    """The task's endpoints by role (`kubernetesServer`), as endpoint ids resolved when it was queued."""

    def lookup(self, reference: str) -> object:
        """The value of a pipeline binding an expression of this task reads."""
        if reference not in self.bindings:
            raise BindingError(f"'${{{reference}}}' was not bound when the task was queued")
        return self.bindings[reference]


@dataclass(frozen=True)
class Succeeded:
    """The task is done; `output` is what later bindings can read."""

    output: Mapping[str, Any]


@dataclass(frozen=True)
class Waiting:
    """The task is not done yet: run it again after `countdown` seconds, handing it `state`."""

    countdown: float
    state: Mapping[str, Any]
    message: str = ""


@dataclass(frozen=True)
class Failed:
    """The task failed; `output` is kept so a rollback can still bind to what the task saw."""

    message: str
    output: Mapping[str, Any] | None = None


Outcome = Succeeded | Waiting | Failed


class Executor(Protocol):
    """Runs one attempt of a task type. Never sleeps to wait: it answers Waiting instead."""

    def execute(self, call: TaskCall) -> Outcome:
        """Run one attempt."""
