"""The pipelines API: create (YAML or JSON), list, get, replace, patch, delete, export, and trigger runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import yaml
from flask import Blueprint, Response, jsonify, request

from api.serialize import pipeline_view
from api.services import json_object, requester, services
from orchestrator.decoding import parse_text
from orchestrator.document import load_pipeline, to_document
from orchestrator.errors import BadRequest
from orchestrator.pipeline import Pipeline

blueprint = Blueprint("pipelines", __name__)

PATCHABLE = frozenset({"enabled", "concurrency", "description"})


def _read_pipeline(default_project: str = "default") -> Pipeline:
    body = request.get_data(cache=True)
    if not body.strip():
        raise BadRequest("the body is empty: send a pipeline document (YAML or JSON)")
    document = parse_text(body, request.content_type)
    store = services().store
    return load_pipeline(document, store.rollback_target, default_project, store.endpoint_exists)


@blueprint.post("/pipelines")
def create() -> tuple[Response, int]:
    record = services().store.add_pipeline(_read_pipeline())
    return jsonify(pipeline_view(record)), 201


@blueprint.get("/pipelines")
def list_() -> Response:
    records = services().store.list_pipelines(request.args.get("project"), request.args.get("name"))
    return jsonify([pipeline_view(record) for record in records])


@blueprint.get("/pipelines/<pipeline_id>")
def get(pipeline_id: str) -> Response:
    return jsonify(pipeline_view(services().store.get_pipeline(pipeline_id)))


@blueprint.put("/pipelines/<pipeline_id>")
def replace(pipeline_id: str) -> Response:
    store = services().store
    current = store.get_pipeline(pipeline_id)
    record = store.replace_pipeline(pipeline_id, _read_pipeline(current.project))
    return jsonify(pipeline_view(record))


@blueprint.patch("/pipelines/<pipeline_id>")
def patch(pipeline_id: str) -> Response:
    changes = json_object(PATCHABLE)
    if nulls := sorted(name for name, value in changes.items() if value is None):
        raise BadRequest(f"{', '.join(nulls)} cannot be null; leave a field out to keep its value")
    store = services().store
    document: dict[str, Any] = to_document(store.get_pipeline(pipeline_id).pipeline) | changes
    record = store.replace_pipeline(
        pipeline_id, load_pipeline(document, store.rollback_target, endpoints=store.endpoint_exists)
    )
    return jsonify(pipeline_view(record))


@blueprint.delete("/pipelines/<pipeline_id>")
def delete(pipeline_id: str) -> tuple[str, int]:
    services().store.delete_pipeline(pipeline_id)
    return "", 204


@blueprint.get("/pipelines/<pipeline_id>/export")
def export(pipeline_id: str) -> Response:
    record = services().store.get_pipeline(pipeline_id)
    text = yaml.safe_dump(to_document(record.pipeline), sort_keys=False, allow_unicode=True)
    response = Response(text, mimetype="application/yaml")
    # RFC 6266 and 5987: a quoted ASCII fallback without quotes, backslashes or control characters (so a name
    # cannot end the header or add one), and the exact name percent-encoded as UTF-8 for clients that read it.
    filename = f"{record.name}.yaml"
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\' else "_" for char in filename)
    encoded = quote(filename.encode("utf-8", "backslashreplace"), safe="")
    response.headers["Content-Disposition"] = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    return response


@blueprint.post("/pipelines/<pipeline_id>/executions")
def trigger(pipeline_id: str) -> tuple[Response, int]:
    body = json_object(frozenset({"input", "comments"}))
    given = {} if body.get("input") is None else body["input"]
    comments = "" if body.get("comments") is None else body["comments"]
    if not isinstance(given, dict):
        raise BadRequest("'input' must be an object of input names and values")
    if not isinstance(comments, str):
        raise BadRequest("'comments' must be a string")
    record = services().store.get_pipeline(pipeline_id)
    execution = services().engine.trigger(record, given, comments, requester())
    link = f"/api/executions/{execution.id}"
    answer = {"executionId": execution.id, "executionIndex": execution.index, "executionLink": link}
    response = jsonify(answer | {"status": execution.status.value})
    response.headers["Location"] = link
    return response, 202
