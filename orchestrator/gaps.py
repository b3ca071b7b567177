"""What a saved pipeline still lacks before it may run: Code Stream's `_warnings`.

A pipeline imported from Code Stream may name endpoints and project variables that do not exist here yet, and
task types Rollway does not run. It is saved all the same, disabled, with one warning per missing name and per
such task; it cannot be enabled (nor run) while any remains. Pure: the lookups say what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from orchestrator import workspace
from orchestrator.bindings import BINDING, RefKind, parse_ref
from orchestrator.errors import BindingError, Problem
from orchestrator.pipeline import Pipeline, RollbackLink
from orchestrator.tasktypes import UNSUPPORTED_TYPES

EndpointLookup = Callable[[str, str], bool]
"""(project, endpoint name) -> whether that endpoint exists."""

VariableLookup = Callable[[str, str], bool]
"""(project, variable name) -> whether the project has that variable (what `${var.NAME}` binds)."""


def warnings(
    pipeline: Pipeline, endpoints: EndpointLookup | None = None, variables: VariableLookup | None = None
) -> list[Problem]:
    """One warning per task of a type Rollway does not run, per missing endpoint and per missing variable
    (each name once, at the first place that names it); a lookup that is None is not checked."""
    found = unsupported(pipeline)
    project = pipeline.project
    if endpoints is not None:
        found += [
            Problem(path, f"endpoint '{name}' does not exist in project '{project}' yet")
            for name, path in _first(_endpoint_names(pipeline)).items()
            if not endpoints(project, name)
        ]
    if variables is not None:
        found += [
            Problem(path, f"project variable '{name}' does not exist in project '{project}' yet")
            for name, path in _first(_variable_names(pipeline)).items()
            if not variables(project, name)
        ]
    return found


def unsupported(pipeline: Pipeline) -> list[Problem]:
    """One warning per task whose type Rollway reads but does not run."""
    return [
        Problem(
            f"stages.{stage.name}.tasks.{task.name}.type",
            f"task '{stage.name}.{task.name}' is a {task.type} task, which Rollway does not run",
        )
        for _, _, task, stage in pipeline.ordered_tasks()
        if task.type in UNSUPPORTED_TYPES
    ] + workspace.unsupported(pipeline)


def summary(found: list[Problem]) -> str:
    """The warnings in one line, for a refusal's message."""
    return "; ".join(problem.message for problem in found)


def _first(pairs: Iterator[tuple[str, str]]) -> dict[str, str]:
    """Each name with the path that names it first."""
    first: dict[str, str] = {}
    for name, path in pairs:
        first.setdefault(name, path)
    return first


def _endpoint_names(pipeline: Pipeline) -> Iterator[tuple[str, str]]:
    for _, _, task, stage in pipeline.ordered_tasks():
        for role, name in task.endpoints.items():
            yield name, f"stages.{stage.name}.tasks.{task.name}.endpoints.{role}"
    ci_endpoint = workspace.endpoint_name(pipeline)
    if ci_endpoint is not None:
        yield ci_endpoint, "workspace.endpoint"
    for position, mail in enumerate(pipeline.notifications.emails):
        if mail.endpoint:
            yield mail.endpoint, f"notifications.email[{position}].endpoint"


def _variable_names(pipeline: Pipeline) -> Iterator[tuple[str, str]]:
    for path, text in _texts(pipeline):
        for body in BINDING.findall(text):
            try:
                ref = parse_ref(body)
            except BindingError:
                continue  # reported as a problem when the document is read
            if ref.kind is RefKind.VAR:
                yield ref.name, path


def _texts(pipeline: Pipeline) -> Iterator[tuple[str, str]]:
    """Every text of a pipeline that may hold bindings, with its path."""
    yield from _strings(pipeline.output, "output")
    for _, _, task, stage in pipeline.ordered_tasks():
        path = f"stages.{stage.name}.tasks.{task.name}"
        yield from _strings(task.input, f"{path}.input")
        if task.pre_condition is not None:
            yield f"{path}.preCondition", task.pre_condition
        yield from _link(task.rollback, f"{path}.rollback")
    for stage in pipeline.stages.values():
        yield from _link(stage.rollback, f"stages.{stage.name}.rollback")
    yield from pipeline.notifications.bound_texts()


def _link(link: RollbackLink | None, path: str) -> Iterator[tuple[str, str]]:
    if link is not None:
        yield from _strings(link.input, f"{path}.input")


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
