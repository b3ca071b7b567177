"""What a task run is given when it is queued: its input with every binding resolved, and the value of each
pipeline binding its expressions will read.

A binding may only name a task that has finished before the binding task starts (`document.py` checks it),
so resolving bindings when the task is queued gives what resolving them when it runs would. A worker then
needs nothing of the execution but the task run it claims.

Values nested deeper than `MAX_NESTING` are refused, as an execution's input and as a bound value (a task's
output may be that deep): decoding such a value again, as a worker does when it claims its task run, can run
out of stack, and a task run no worker can claim would leave its execution running for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator import expressions
from orchestrator.bindings import Scope, resolve
from orchestrator.errors import BindingError, InputInvalid, Problem
from orchestrator.pipeline import Pipeline, Task
from orchestrator.structured import bind_documents, bind_headers, bind_url
from orchestrator.tasktypes import TASK_TYPES, TaskType, check_task_input

MAX_NESTING = 64


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


def nesting(value: object, limit: int = MAX_NESTING) -> bool:
    """Whether a JSON value holds more than `limit` lists or objects one inside the other (walked without recursion)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def input_problems(given: Mapping[str, object]) -> list[Problem]:
    """What is wrong with the values given as an execution's input, whatever its pipeline."""
    return [
        Problem(f"input.{name}", f"is nested more than {MAX_NESTING} lists or objects deep")
        for name, value in given.items()
        if nesting(value)
    ]


def bind_task(task: Task, scope: Scope) -> BoundTask:
    """Resolve a task's bindings against its execution; raises BindingError or ExpressionError if one fails.

    The bound input is then checked as the pipeline was when it was saved, by the same checks, now with every value
    known: InputInvalid names each value a binding made unusable (a `pollCount` bound to "ten"), before any worker
    is sent it.
    """
    spec = TASK_TYPES[task.type]
    lookup = _shallow(scope.lookup)
    given = {name: _bind_field(spec, name, value, lookup) for name, value in task.input.items()}
    problems = check_task_input(task.type, given)
    if problems:
        raise InputInvalid("; ".join(f"{problem.path} {problem.message}" for problem in problems), problems)
    bindings = {
        reference: lookup(reference)
        for text in spec.expressions(task.input).values()
        for reference in expressions.parse(text).references
        if reference_head(reference) not in spec.local_names
    }
    return BoundTask(given, bindings)


def _bind_field(spec: TaskType, name: str, value: object, lookup: Callable[[str], object]) -> object:
    """One input field bound: expressions as written, and documents, URLs and headers keeping their structure."""
    if name in spec.expression_fields:
        return value
    if name in spec.document_fields and isinstance(value, str):
        return bind_documents(value, lookup, name)
    if name in spec.url_fields and isinstance(value, str):
        return bind_url(value, lookup)
    if name in spec.header_fields:
        return bind_headers(value, lookup, name)
    return resolve(value, lookup)


def _shallow(lookup: Callable[[str], object]) -> Callable[[str], object]:
    """`lookup`, refusing a value nested too deeply to hand to a worker."""

    def shallow(reference: str) -> object:
        value = lookup(reference)
        if nesting(value):
            raise BindingError(f"'${{{reference.strip()}}}' is nested more than {MAX_NESTING} lists or objects deep")
        return value

    return shallow


def bind_input(pipeline: Pipeline, given: Mapping[str, Any]) -> dict[str, Any]:
    """An execution's input: the pipeline's defaults overlaid with what was given.

    Raises InputInvalid listing every unknown name, every mandatory input left empty and every value too deep.
    """
    problems = [
        Problem(f"input.{name}", f"pipeline '{pipeline.name}' has no input named '{name}'")
        for name in given
        if name not in pipeline.input
    ]
    problems += input_problems(given)
    values = {**pipeline.input, **{name: value for name, value in given.items() if name in pipeline.input}}
    # Only text can be blank (and a value nested too deeply could not even be turned into text).
    problems += [
        Problem(f"input.{name}", f"is mandatory: {pipeline.input_meta[name].description or 'give a value'}")
        for name in pipeline.mandatory_inputs()
        if values.get(name) is None or (isinstance(values[name], str) and not values[name].strip())
    ]
    if problems:
        raise InputInvalid(f"the input of pipeline '{pipeline.name}' has {len(problems)} problem(s)", problems)
    return values
