"""What a task run is given when it is queued: its input with every binding resolved, and the value of each
pipeline binding its expressions will read.

A binding may only name a task that has finished before the binding task starts (`document.py` checks it),
so resolving bindings when the task is queued gives what resolving them when it runs would. A worker then
needs nothing of the execution but the task run it claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator import expressions
from orchestrator.bindings import Scope, resolve
from orchestrator.pipeline import Task
from orchestrator.tasktypes import TASK_TYPES


@dataclass(frozen=True)
class BoundTask:
    """A task's input with bindings resolved (expression fields left as written), what its expressions read,
    and its endpoints by role as endpoint ids (resolved by the engine, which can look them up)."""

    input: Mapping[str, Any]
    bindings: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)


def reference_head(reference: str) -> str:
    """The first name of a reference: `responseJson` for `responseJson.items[0].id`."""
    return reference.split(".", 1)[0].split("[", 1)[0].strip()


def bind_task(task: Task, scope: Scope) -> BoundTask:
    """Resolve a task's bindings against its execution; raises BindingError or ExpressionError if one fails."""
    spec = TASK_TYPES[task.type]
    given = {
        name: value if name in spec.expression_fields else resolve(value, scope.lookup)
        for name, value in task.input.items()
    }
    bindings = {
        reference: scope.lookup(reference)
        for text in spec.expressions(task.input).values()
        for reference in expressions.parse(text).references
        if reference_head(reference) not in spec.local_names
    }
    return BoundTask(given, bindings)
