"""Nested executions: what a Pipeline task asks for, and what its task run becomes when its child ends.

A Pipeline task runs in the engine, never in a worker: when it starts, the engine inserts a child execution of
the named pipeline (relation `nested`) in the same step, and the task run waits (WAITING, no worker held) with
an output naming the child. When the child ends (`Engine.finished`, or the sweep if that follow-up was lost) the
run completes with the child's output, or fails naming the child and how it ended, so the parent's rollback runs.
The decisions here are pure; the engine does the writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator import defaults
from orchestrator.errors import InputInvalid
from orchestrator.execution import Execution
from orchestrator.status import ExecutionStatus


@dataclass(frozen=True)
class Asked:
    """What a bound Pipeline task asks: the pipeline to run and the input it gives it."""

    pipeline: str
    input: Mapping[str, Any]


def asked_of(task_input: Mapping[str, Any]) -> Asked:
    """A bound Pipeline task's request; ValueError naming the field when it asks nothing runnable (a binding gave
    something else than an object of inputs, say)."""
    name = task_input.get("pipeline")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"pipeline must name a pipeline, not {name!r}")
    given = task_input.get("inputProperties") or {}
    if not isinstance(given, Mapping):
        raise ValueError(f"inputProperties must be an object of input names and values, not {given!r}")
    return Asked(name, dict(given))


def too_deep(depth: int) -> str | None:
    """Why a nested execution may not start at `depth` levels below a top-level one, if it may not."""
    if depth > defaults.MAX_NESTING_DEPTH:
        return (
            f"nested pipelines may be at most {defaults.MAX_NESTING_DEPTH} levels deep (a pipeline that runs itself?)"
        )
    return None


def unavailable(name: str, project: str, *, exists: bool) -> str:
    """Why the pipeline a Pipeline task names cannot run: missing, or disabled."""
    if not exists:
        return f"nested pipeline '{name}' does not exist in project '{project}'"
    return f"nested pipeline '{name}' is disabled; enable it before running it"


def input_refused(name: str, error: InputInvalid) -> str:
    """The task's message when the nested pipeline refuses the input it was given."""
    problems = "; ".join(f"{item.path} {item.message}" for item in error.details)
    return f"the input of nested pipeline '{name}' is not valid: {problems or error.message}"


def waiting(child: Execution) -> tuple[str, dict[str, Any]]:
    """The message and output of a Pipeline task's run while its child runs."""
    return f"waiting for nested execution {child.pipeline_name} #{child.index}", {
        "executionId": child.id,
        "status": child.status.value,
    }


def ended(child: Execution) -> tuple[bool, str, dict[str, Any]]:
    """What a Pipeline task's run becomes once its child ended: (completed, message, output)."""
    output: dict[str, Any] = {"executionId": child.id, "status": child.status.value, "outputProperties": {}}
    if child.status is ExecutionStatus.COMPLETED:
        return True, "", output | {"outputProperties": dict(child.output)}
    message = f"nested execution {child.pipeline_name} #{child.index} ended {child.status}"
    if child.status_message:
        message += f": {child.status_message}"
    return False, message, output
