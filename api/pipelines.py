"""The pipelines API: create (YAML or JSON), list, get, replace, patch, delete, export, and trigger runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from api import audit
from api.auth import allow, principal, project_for_new, requester, require_visible, visible_project
from api.serialize import pipeline_document, pipeline_view, pipeline_warnings
from api.services import json_object, services
from api.variables import variable_exists
from orchestrator import batch, gaps, readiness
from orchestrator.decoding import (
    LONE_SURROGATE,
    MAX_DOCUMENT_BYTES,
    dump_yaml_documents,
    load_yaml_documents,
    lone_surrogate_path,
    parse_text,
)
from orchestrator.document import load_pipeline, to_document
from orchestrator.errors import BadRequest, Conflict, Problem
from orchestrator.execution import Execution, PipelineRecord
from orchestrator.pipeline import Pipeline
from orchestrator.policy import Action

blueprint = Blueprint("pipelines", __name__)

PATCHABLE = frozenset({"enabled", "concurrency", "description"})


def _read_pipeline(default_project: str | None = None) -> Pipeline:
    """The pipeline in the request body, in a project the caller may act in (403 otherwise).

    The project is checked before the document is validated: validation looks up rollback pipelines and
    endpoints in it, and its problems must not tell what another project holds.
    """
    body = request.get_data(cache=True)
    if not body.strip():
        raise BadRequest("the body is empty: send a pipeline document (YAML or JSON)")
    document = parse_text(body, request.content_type)
    named = document.get("project") if isinstance(document, dict) else None
    project = project_for_new(named if isinstance(named, str) and named else default_project)
    store = services().store
    pipeline = load_pipeline(document, store.rollback_target, project, store.endpoint_exists, variable_exists())
    project_for_new(pipeline.project)
    return pipeline


def visible_pipeline(pipeline_id: str) -> PipelineRecord:
    """A pipeline of a project the caller sees; 404, like a missing one, otherwise."""
    record = services().store.get_pipeline(pipeline_id)
    require_visible(record.project, f"pipeline with id '{pipeline_id}'")
    return record


@blueprint.post("/pipelines")
@allow(Action.EDIT)
def create() -> tuple[Response, int]:
    record = services().store.add_pipeline(_read_pipeline())
    return jsonify(pipeline_view(record)), 201


@blueprint.post("/pipelines/apply")
@allow(Action.EDIT)
def apply_batch() -> Response:
    """Create or replace (by project and name) every pipeline of `documents` in one transaction, or none.

    A document that does not say `enabled` keeps the saved pipeline's; with `dryRun` the batch is only validated.
    Answers each document's outcome in the order applied (rollback pipelines before those naming them).
    """
    body = json_object(frozenset({"documents", "dryRun"}))
    documents = batch.check_documents(body.get("documents"))
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dryRun' must be true or false")
    # Every document's project is checked before any is validated, as for one pipeline (see `_read_pipeline`).
    projects = [project_for_new(_named_project(document)) for document in documents]
    store = services().store
    lookups = batch.Lookups(store.find_pipeline, store.rollback_target, store.endpoint_exists, variable_exists())
    planned = batch.plan(documents, projects, lookups)
    changed = [item for item in planned if item.action is not batch.Action.UNCHANGED]
    saved = {} if dry_run else _save(changed)
    results = [_outcome(item, saved.get(item.position)) for item in planned]
    return jsonify({"dryRun": dry_run, "pipelines": results})


def _named_project(document: object) -> str | None:
    named = document.get("project") if isinstance(document, dict) else None
    return named if isinstance(named, str) and named else None


def _save(changed: list[batch.Planned]) -> dict[int, PipelineRecord]:
    """The batch's changes saved together, by their place in the batch."""
    records = services().store.apply_pipelines(
        [(None if item.existing is None else item.existing.id, item.pipeline) for item in changed]
    )
    return {item.position: record for item, record in zip(changed, records, strict=True)}


def _outcome(item: batch.Planned, record: PipelineRecord | None) -> dict[str, Any]:
    known = record or item.existing
    return {
        "action": item.action.value,
        "id": None if known is None else known.id,
        "project": item.pipeline.project,
        "name": item.pipeline.name,
        "enabled": item.pipeline.enabled,
        "document": item.position,
        "_warnings": [problem.as_dict() for problem in pipeline_warnings(item.pipeline)],
    }


@blueprint.post("/pipelines/import")
@allow(Action.EDIT)
def import_() -> Response:
    """Apply every pipeline of a Code Stream export (YAML, one or more documents) together, or none of them, as
    `apply` does; each answered with what became of it and its `_warnings`."""
    body = request.get_data(cache=True)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise BadRequest(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    text = body.decode("utf-8", errors="replace")
    documents = [document for document in load_yaml_documents(text, "the body") if document is not None]
    if not documents:
        raise BadRequest("the body holds no pipeline document")
    # YAML reads "\ud800" in a double-quoted string as half a surrogate pair, which no database can store.
    if (path := lone_surrogate_path(documents, "documents")) is not None:
        raise BadRequest(f"'{path}' {LONE_SURROGATE}", [Problem(path, LONE_SURROGATE)])
    documents = batch.check_documents(documents)
    projects = [project_for_new(_named_project(document)) for document in documents]
    store = services().store
    lookups = batch.Lookups(store.find_pipeline, store.rollback_target, store.endpoint_exists, variable_exists())
    planned = batch.plan(documents, projects, lookups)
    saved = _save([item for item in planned if item.action is not batch.Action.UNCHANGED])
    return jsonify({"pipelines": [_imported(item, saved.get(item.position)) for item in planned]})


def _imported(item: batch.Planned, record: PipelineRecord | None) -> dict[str, Any]:
    known = record or item.existing
    if known is None:  # a created or updated pipeline is saved; an unchanged one exists
        raise AssertionError(f"pipeline '{item.pipeline.name}' was neither saved nor found")
    return pipeline_view(known) | {"action": item.action.value}


@blueprint.get("/pipelines")
@allow(Action.READ)
def list_() -> Response:
    project = visible_project(request.args.get("project"))
    records = services().store.list_pipelines(project, request.args.get("name"))
    return jsonify([pipeline_view(record) for record in records])


@blueprint.get("/pipelines/<pipeline_id>")
@allow(Action.READ)
def get(pipeline_id: str) -> Response:
    return jsonify(pipeline_view(visible_pipeline(pipeline_id)))


@blueprint.put("/pipelines/<pipeline_id>")
@allow(Action.EDIT)
def replace(pipeline_id: str) -> Response:
    current = visible_pipeline(pipeline_id)
    record = services().store.replace_pipeline(pipeline_id, _read_pipeline(current.project))
    return jsonify(pipeline_view(record))


@blueprint.patch("/pipelines/<pipeline_id>")
@allow(Action.EDIT)
def patch(pipeline_id: str) -> Response:
    current = visible_pipeline(pipeline_id)
    changes = json_object(PATCHABLE)
    if nulls := sorted(name for name, value in changes.items() if value is None):
        raise BadRequest(f"{', '.join(nulls)} cannot be null; leave a field out to keep its value")
    return jsonify(pipeline_view(change_pipeline(current, changes)))


def change_pipeline(current: PipelineRecord, changes: dict[str, Any]) -> PipelineRecord:
    """`current` with `changes` (of PATCHABLE) made and saved; 409 when enabling a pipeline that still lacks
    something (its `_warnings`). The caller has checked the caller may see it."""
    store = services().store
    document: dict[str, Any] = to_document(current.pipeline) | changes
    lacking = pipeline_warnings(current.pipeline) if changes.get("enabled") is True else []
    if lacking:
        raise Conflict(f"pipeline '{current.name}' cannot be enabled: {gaps.summary(lacking)}", lacking)
    return store.replace_pipeline(
        current.id,
        load_pipeline(document, store.rollback_target, endpoints=store.endpoint_exists, variables=variable_exists()),
    )


@blueprint.delete("/pipelines/<pipeline_id>")
@allow(Action.EDIT)
def delete(pipeline_id: str) -> tuple[str, int]:
    visible_pipeline(pipeline_id)
    services().store.delete_pipeline(pipeline_id)
    return "", 204


@blueprint.get("/pipelines/<pipeline_id>/export")
@allow(Action.READ)
def export(pipeline_id: str) -> Response:
    record = visible_pipeline(pipeline_id)
    text = dump_yaml_documents([pipeline_document(record)])
    response = Response(text, mimetype="application/yaml")
    # RFC 6266 and 5987: a quoted ASCII fallback without quotes, backslashes or control characters (so a name
    # cannot end the header or add one), and the exact name percent-encoded as UTF-8 for clients that read it.
    filename = f"{record.name}.yaml"
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\' else "_" for char in filename)
    encoded = quote(filename.encode("utf-8", "backslashreplace"), safe="")
    response.headers["Content-Disposition"] = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    return response


@blueprint.post("/pipelines/<pipeline_id>/executions")
@allow(Action.RUN)
def trigger(pipeline_id: str) -> tuple[Response, int]:
    record = visible_pipeline(pipeline_id)
    body = json_object(frozenset({"input", "comments", "force"}))
    given = {} if body.get("input") is None else body["input"]
    comments = "" if body.get("comments") is None else body["comments"]
    force = body.get("force", False)
    if not isinstance(given, dict):
        raise BadRequest("'input' must be an object of input names and values")
    if not isinstance(comments, str):
        raise BadRequest("'comments' must be a string")
    if not isinstance(force, bool):
        raise BadRequest("'force' must be true or false")
    execution = start_run(record, given, comments, force)
    link = f"/api/executions/{execution.id}"
    answer = {"executionId": execution.id, "executionIndex": execution.index, "executionLink": link}
    response = jsonify(answer | {"status": execution.status.value})
    response.headers["Location"] = link
    return response, 202


def start_run(record: PipelineRecord, given: dict[str, Any], comments: str, force: bool) -> Execution:
    """A new execution of `record` requested by the caller (a forced start is noted in the audit log)."""
    started = services().engine.start(
        record, given, comments, requester(), requested_by_admin=principal().is_admin, force=force
    )
    if started.overridden:
        audit.note(readiness.override_note(started.overridden, requester()))
    return started.execution
