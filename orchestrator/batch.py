"""A batch of pipeline documents applied together (`POST /api/pipelines/apply`, `rollway apply -f FILE`).

The batch is validated as a whole before anything is saved, and then saved in one transaction (the store's
`apply_pipelines`). A pipeline may name as its rollback another pipeline of the same batch, wherever it stands in
the file: the documents are read in dependency order (a rollback pipeline before those naming it), and each is
checked against the store and the documents of the batch read before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from orchestrator.document import RollbackTarget, TargetLookup, load_pipeline, to_document
from orchestrator.errors import BadRequest, PipelineInvalid, Problem
from orchestrator.execution import PipelineRecord
from orchestrator.gaps import EndpointLookup, VariableLookup
from orchestrator.pipeline import Pipeline

MAX_DOCUMENTS = 200

PipelineKey = tuple[str, str]
"""(project, pipeline name)."""

ExistingLookup = Callable[[str, str], PipelineRecord | None]
"""(project, pipeline name) -> the saved pipeline of that name, or None."""


class Action(StrEnum):
    """What applying one document does."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Lookups:
    """What validating a batch reads from the store."""

    existing: ExistingLookup
    targets: TargetLookup
    endpoints: EndpointLookup | None = None
    variables: VariableLookup | None = None


@dataclass(frozen=True)
class Planned:
    """One document of the batch, validated: the pipeline it becomes and the saved one it replaces, if any."""

    position: int
    pipeline: Pipeline
    existing: PipelineRecord | None

    @property
    def action(self) -> Action:
        if self.existing is None:
            return Action.CREATED
        if to_document(self.existing.pipeline) == to_document(self.pipeline):
            return Action.UNCHANGED
        return Action.UPDATED


def plan(documents: Sequence[object], projects: Sequence[str], lookups: Lookups) -> list[Planned]:
    """The batch validated, in the order to apply it; PipelineInvalid naming every problem of every document.

    `projects[i]` is the project document i goes in (the API has checked the caller may act there). A document that
    does not say `enabled` keeps the saved pipeline's: applying a file again does not switch a pipeline off.
    """
    keys = [_key(document, project) for document, project in zip(documents, projects, strict=True)]
    problems = _duplicates(keys)
    batch: dict[PipelineKey, Pipeline] = {}
    planned: list[Planned] = []
    failed: list[int] = []

    def target(project: str, name: str) -> RollbackTarget | None:
        found = batch.get((project, name))
        if found is None:
            return lookups.targets(project, name)
        return RollbackTarget(name, frozenset(found.input), frozenset(found.mandatory_inputs()))

    for position in apply_order(documents, keys):
        document, project, key = documents[position], projects[position], keys[position]
        existing = lookups.existing(*key) if key is not None else None
        if existing is not None and isinstance(document, Mapping) and "enabled" not in document:
            document = {**document, "enabled": existing.pipeline.enabled}
        try:
            pipeline = load_pipeline(document, target, project, lookups.endpoints, lookups.variables)
        except PipelineInvalid as error:
            failed.append(position)
            problems += [replace(item, path=_in_document(position, item.path)) for item in error.details]
            continue
        batch[(pipeline.project, pipeline.name)] = pipeline
        planned.append(Planned(position, pipeline, existing))
    if problems:
        raise PipelineInvalid(_summary(documents, keys, failed, len(problems)), problems)
    return planned


def apply_order(documents: Sequence[object], keys: Sequence[PipelineKey | None]) -> list[int]:
    """Positions of the documents, each rollback pipeline of the batch before the documents naming it, otherwise
    in file order; BadRequest when pipelines of the batch name each other round in a circle."""
    where = {key: position for position, key in enumerate(keys) if key is not None}
    needs = [
        {where[(key[0], name)] for name in rollback_names(document) if (key[0], name) in where} - {position}
        if key is not None
        else set()
        for position, (document, key) in enumerate(zip(documents, keys, strict=True))
    ]
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(documents):
        ready = [position for position in range(len(documents)) if position not in done and needs[position] <= done]
        if not ready:
            circle = ", ".join(sorted(f"'{key[1]}'" for key in _left(keys, done)))
            raise BadRequest(f"pipelines {circle} name each other as rollbacks in a circle; nothing was applied")
        order.append(ready[0])
        done.add(ready[0])
    return order


def _left(keys: Sequence[PipelineKey | None], done: set[int]) -> list[PipelineKey]:
    return [key for position, key in enumerate(keys) if position not in done and key is not None]


def rollback_names(document: object) -> set[str]:
    """The pipeline names a raw document's stages and tasks link to as rollbacks (whatever else is wrong with it)."""
    found: set[str] = set()
    stages = document.get("stages") if isinstance(document, Mapping) else None
    for stage in stages.values() if isinstance(stages, Mapping) else ():
        if not isinstance(stage, Mapping):
            continue
        tasks = stage.get("tasks")
        holders = [stage, *(tasks.values() if isinstance(tasks, Mapping) else ())]
        for holder in holders:
            link = holder.get("rollback") if isinstance(holder, Mapping) else None
            name = link.get("pipeline") if isinstance(link, Mapping) else None
            if isinstance(name, str) and name:
                found.add(name)
    # Code Stream's exports list their links apart: `rollbacks: [{name, stage, task?, inputs}]`.
    entries = document.get("rollbacks") if isinstance(document, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name:
            found.add(name)
    return found


def _key(document: object, project: str) -> PipelineKey | None:
    name = document.get("name") if isinstance(document, Mapping) else None
    return (project, name) if isinstance(name, str) and name else None


def _duplicates(keys: Sequence[PipelineKey | None]) -> list[Problem]:
    first: dict[PipelineKey, int] = {}
    problems = []
    for position, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            message = f"pipeline '{key[1]}' of project '{key[0]}' is also document {first[key] + 1} of the batch"
            problems.append(Problem(_in_document(position, "name"), message))
        else:
            first[key] = position
    return problems


def _label(position: int, key: PipelineKey | None) -> str:
    return f"{position + 1} ({key[1]})" if key is not None else str(position + 1)


def _in_document(position: int, path: str) -> str:
    return f"documents[{position}].{path}" if path else f"documents[{position}]"


def _summary(documents: Sequence[object], keys: Sequence[PipelineKey | None], failed: list[int], count: int) -> str:
    """One line: which documents have problems (by place and name), and that nothing was applied."""
    names = [_label(position, keys[position]) for position in failed]
    problems = f"{count} problem{'s' if count != 1 else ''}"
    if len(documents) == 1:  # what saving one pipeline says
        return f"the pipeline has {problems}"
    if not names:
        return f"the batch has {problems}; nothing was applied"
    which = f"document {names[0]}" if len(names) == 1 else f"documents {', '.join(names)}"
    return f"{which} of {len(documents)} {'has' if len(names) == 1 else 'have'} {problems}; nothing was applied"


def check_documents(documents: object) -> list[object]:
    """The `documents` of an apply request: a non-empty list of at most MAX_DOCUMENTS; BadRequest otherwise."""
    if not isinstance(documents, list) or not documents:
        raise BadRequest("'documents' must be a non-empty list of pipeline documents")
    if len(documents) > MAX_DOCUMENTS:
        raise BadRequest(f"a batch holds at most {MAX_DOCUMENTS} documents, not {len(documents)}")
    return list(documents)
