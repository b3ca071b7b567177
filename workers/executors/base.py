"""What an executor is given and what it answers: the contract between the worker and each task type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.errors import BindingError
from orchestrator.outcome import Failed, Outcome, Succeeded, Waiting

__all__ = ["Executor", "Failed", "Outcome", "Succeeded", "TaskCall", "Waiting"]


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
    run_id: str = ""
    """The task run this attempt belongs to: the same for every attempt (REST sends it as Idempotency-Key)."""
    execution_id: str = ""
    pipeline: str = ""
    stage: str = ""
    task: str = ""
    """Where the run is, by name: what a CI task's Job is labelled with."""

    def lookup(self, reference: str) -> object:
        """The value of a pipeline binding an expression of this task reads."""
        if reference not in self.bindings:
            raise BindingError(f"'${{{reference}}}' was not bound when the task was queued")
        return self.bindings[reference]


class Executor(Protocol):
    """Runs one attempt of a task type. Never sleeps to wait: it answers Waiting instead (never Lost, which only
    the sweep reports)."""

    def execute(self, call: TaskCall) -> Outcome:
        """Run one attempt."""
