"""Rollback you can count on: whether a release's rollback could run, decided before the release starts.

A pipeline links rollback pipelines to its stages and tasks (`rollback: {pipeline, input}`). Before an execution of
it is inserted, every link is checked: (1) the rollback pipeline exists in the project and is enabled; (2) each of
its mandatory inputs that has no default is given by the link, as a value or as bindings that name something that
exists; (3) each endpoint its tasks name exists and answered a probe with its credentials within
`PROBE_FRESH_SECONDS`. Each problem is one reason; any reason refuses the trigger (409) unless it is forced, and a
forced start records the reasons it overrode.

Pure: plain data in (the pipeline, what the store holds of its rollback pipelines, the endpoints' last probes and
the project's variable names), reasons out. Reading those, and probing endpoints whose probe is stale, is the thin
I/O of `preflight.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator import defaults
from orchestrator.bindings import RefKind, find_refs, parse_ref
from orchestrator.endpoints import Probe
from orchestrator.errors import BindingError, Problem
from orchestrator.pipeline import Pipeline, RollbackLink
from orchestrator.workspace import endpoints_of


@dataclass(frozen=True)
class RollbackPipeline:
    """What the check needs of a pipeline named as a rollback: whether it is enabled, its mandatory inputs that have
    no default (a link must give them), and the endpoints its tasks name."""

    name: str
    enabled: bool
    unfilled: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()

    @classmethod
    def of(cls, pipeline: Pipeline) -> RollbackPipeline:
        unfilled = tuple(name for name in pipeline.mandatory_inputs() if _blank(pipeline.input.get(name)))
        named = {name for _, _, task, _ in pipeline.ordered_tasks() for name in endpoints_of(pipeline, task).values()}
        return cls(pipeline.name, pipeline.enabled, unfilled, tuple(sorted(named)))


@dataclass(frozen=True)
class Link:
    """One rollback link of a pipeline: where it is (a document path, and in words) and what it says."""

    path: str
    where: str
    link: RollbackLink


@dataclass(frozen=True)
class Facts:
    """What the store holds that the decision reads.

    `rollbacks` maps each linked name to its pipeline (None: there is none of that name in the project);
    `endpoints` maps the name of every endpoint of the project that a rollback pipeline names to its last probe
    (None: never probed); a name missing from it is an endpoint that does not exist.
    """

    project: str
    rollbacks: Mapping[str, RollbackPipeline | None]
    endpoints: Mapping[str, Probe | None]
    variables: frozenset[str]
    now: datetime
    fresh_seconds: float = defaults.PROBE_FRESH_SECONDS


def links(pipeline: Pipeline) -> list[Link]:
    """Every rollback link of a pipeline, stage by stage in run order, each stage's own link before its tasks'."""
    found = []
    for stage_name in pipeline.stage_order:
        stage = pipeline.stages[stage_name]
        if stage.rollback is not None:
            found.append(Link(f"stages.{stage.name}.rollback", f"stage '{stage.name}'", stage.rollback))
        for group in stage.groups:
            for task in (stage.tasks[name] for name in group):
                if task.rollback is not None:
                    path = f"stages.{stage.name}.tasks.{task.name}.rollback"
                    found.append(Link(path, f"task '{stage.name}.{task.name}'", task.rollback))
    return found


def targets(pipeline: Pipeline) -> list[str]:
    """The rollback pipelines a pipeline links to, each once."""
    return sorted({link.link.pipeline for link in links(pipeline)})


def endpoints_named(rollbacks: Iterable[RollbackPipeline | None]) -> list[str]:
    """The endpoints the tasks of these rollback pipelines name, each once."""
    return sorted({name for target in rollbacks if target is not None for name in target.endpoints})


def age(probe: Probe, now: datetime) -> float:
    """Seconds since a probe (never below zero: another process's clock may run a little ahead)."""
    return max((now - probe.at).total_seconds(), 0.0)


def is_fresh(probe: Probe | None, now: datetime, seconds: float = defaults.PROBE_FRESH_SECONDS) -> bool:
    """Whether a probe was made within `seconds` (None, never probed, is not)."""
    return probe is not None and age(probe, now) <= seconds


def reasons(pipeline: Pipeline, facts: Facts) -> list[Problem]:
    """Why the rollback of a release of `pipeline` could not run: one problem per missing or disabled rollback
    pipeline, per mandatory rollback input a link cannot bind, and per rollback endpoint that is missing or did not
    answer. Empty when every rollback could run (or there is none)."""
    problems: list[Problem] = []
    checked: set[str] = set()
    for link in links(pipeline):
        name = link.link.pipeline
        target = facts.rollbacks.get(name)
        if name not in checked:
            checked.add(name)
            problems += _target_problems(link, name, target, facts)
        if target is not None:
            problems += _input_problems(pipeline, link, target, facts.variables)
    return problems


def override_note(overridden: Sequence[Problem], actor: str) -> str:
    """What a forced start records: who forced it, past which reasons."""
    who = actor or "someone"
    said = "; ".join(problem.message for problem in overridden)
    return f"forced: {who} started it although its rollback could not run ({len(overridden)} problem(s)): {said}"


def refusal(pipeline: Pipeline, problems: Sequence[Problem]) -> str:
    """The message of a refused trigger; `problems` are its details."""
    return (
        f"pipeline '{pipeline.name}' was not started: its rollback could not run ({len(problems)} problem(s)); "
        'fix them, or trigger it with "force": true to start it anyway'
    )


def _target_problems(link: Link, name: str, target: RollbackPipeline | None, facts: Facts) -> list[Problem]:
    """What is wrong with a rollback pipeline itself: missing, disabled, or an endpoint of it that did not answer."""
    if target is None:
        return [Problem(link.path, f"rollback pipeline '{name}' does not exist in project '{facts.project}'")]
    problems = []
    if not target.enabled:
        problems.append(Problem(link.path, f"rollback pipeline '{name}' is disabled"))
    for endpoint in target.endpoints:
        why = _endpoint_problem(endpoint, facts)
        if why is not None:
            problems.append(Problem(link.path, f"endpoint '{endpoint}' of rollback pipeline '{name}' {why}"))
    return problems


def _endpoint_problem(name: str, facts: Facts) -> str | None:
    if name not in facts.endpoints:
        return f"does not exist in project '{facts.project}'"
    probe = facts.endpoints[name]
    if probe is None:
        return "has not been probed yet"
    if not is_fresh(probe, facts.now, facts.fresh_seconds):
        return (
            f"was last probed {age(probe, facts.now):.0f}s ago, longer than {facts.fresh_seconds:g}s: "
            "whether it answers now is not known"
        )
    if not probe.ok:
        return f"did not answer: {probe.message}"
    return None


def _input_problems(
    pipeline: Pipeline, link: Link, target: RollbackPipeline, variables: frozenset[str]
) -> list[Problem]:
    """The mandatory inputs of `target` without a default that `link` does not give, or gives bindings that name
    nothing. Static: a binding that names an output is taken as given (the rollback binds it leniently)."""
    problems = []
    for name in target.unfilled:
        path = f"{link.path}.input.{name}"
        value = link.link.input.get(name)
        subject = f"mandatory input '{name}' of rollback pipeline '{target.name}'"
        if _blank(value):
            problems.append(Problem(path, f"{subject} is not given by the rollback link of {link.where}"))
        elif (why := _unbindable(value, pipeline, variables)) is not None:
            problems.append(Problem(path, f"{subject} cannot be bound by the rollback link of {link.where}: {why}"))
    return problems


def _unbindable(value: object, pipeline: Pipeline, variables: frozenset[str]) -> str | None:
    """Why a value's bindings cannot all be resolved, naming the first that cannot; None when they can."""
    for text in find_refs(value):
        try:
            ref = parse_ref(text)
        except BindingError as error:
            return error.message
        binding = f"'${{{ref.text}}}'"
        if ref.kind is RefKind.INPUT and ref.name not in pipeline.input:
            return f"{binding}: pipeline '{pipeline.name}' has no input named '{ref.name}'"
        if ref.kind is RefKind.VAR and ref.name not in variables:
            return f"{binding}: there is no project variable named '{ref.name}' in project '{pipeline.project}'"
        if ref.kind is RefKind.OUTPUT and ref.task not in getattr(pipeline.stages.get(ref.stage), "tasks", {}):
            return f"{binding}: pipeline '{pipeline.name}' has no task '{ref.stage}.{ref.task}'"
    return None


def _blank(value: object) -> bool:
    """Whether a value gives nothing: missing, null, or text with nothing but spaces (as a mandatory input)."""
    return value is None or (isinstance(value, str) and not value.strip())


def rollback_endpoints(rows: Iterable[tuple[str, str, bool, Sequence[str], Sequence[str]]]) -> set[tuple[str, str]]:
    """(project, endpoint name) of every endpoint named by a rollback pipeline of an enabled pipeline: what the
    sweep keeps probed. `rows` are (project, name, enabled, rollback targets, endpoint names) of every pipeline."""
    listed = list(rows)
    endpoints = {(project, name): tuple(named) for project, name, _, _, named in listed}
    wanted = {(project, target) for project, _, enabled, linked, _ in listed if enabled for target in linked}
    return {(project, endpoint) for project, target in wanted for endpoint in endpoints.get((project, target), ())}
