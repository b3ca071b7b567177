"""The webhook triggers API: create, list, get and delete triggers, and the hook they give GitHub or a registry.

`POST /api/triggers/<name>` takes no bearer token: the delivery's `X-Hub-Signature-256` over its raw body
authenticates it. An unknown name is refused exactly like a bad signature, so names cannot be probed.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import acting_in, allow, project_for_new, public, requester, require_visible, visible_project
from api.serialize import timestamp
from api.services import json_object, services
from orchestrator.errors import BadRequest, Unauthorized
from orchestrator.policy import Action
from orchestrator.transaction import new_id
from orchestrator.triggers import FIELDS, Fired, Trigger, Triggers, check_pipeline, delivery_problem, draft_from_body
from orchestrator.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, bind_delivery, signature_matches

blueprint = Blueprint("triggers", __name__)

REFUSED = f"the delivery is not signed for this hook: send '{SIGNATURE_HEADER}: sha256=<HMAC-SHA256 of the body>'"
# Signed against when the name is unknown, so that answer takes the work a bad signature takes.
UNKNOWN_SECRET = "no trigger has this secret"
MAX_COMMENT_PART = 100
PING_EVENT = "ping"


def _triggers() -> Triggers:
    store = services().store
    return Triggers(store.engine, store.vault)


def trigger_view(trigger: Trigger) -> dict[str, Any]:
    return {
        "id": trigger.id,
        "name": trigger.name,
        "project": trigger.project,
        "pipeline": trigger.pipeline,
        "input": dict(trigger.input),
        "createdBy": trigger.created_by,
        "createdAt": timestamp(trigger.created_at),
        "hookLink": f"/api/triggers/{trigger.name}",
    }


@blueprint.post("/triggers")
@allow(Action.EDIT)
def create() -> tuple[Response, int]:
    draft = draft_from_body(json_object(FIELDS))
    project = project_for_new(draft.project)
    check_pipeline(draft, services().store.find_pipeline(project, draft.pipeline), project)
    trigger = _triggers().add(new_id(), draft, project, requester())
    response = jsonify(trigger_view(trigger))
    response.headers["Location"] = f"/api/triggers/{trigger.id}"
    return response, 201


@blueprint.get("/triggers")
@allow(Action.READ)
def list_() -> Response:
    found = _triggers().list(visible_project(request.args.get("project")))
    return jsonify([trigger_view(trigger) for trigger in found])


def _visible(trigger_id: str) -> Trigger:
    trigger = _triggers().get(trigger_id)
    require_visible(trigger.project, f"trigger with id '{trigger_id}'")
    return trigger


@blueprint.get("/triggers/<trigger_id>")
@allow(Action.READ)
def get(trigger_id: str) -> Response:
    return jsonify(trigger_view(_visible(trigger_id)))


@blueprint.delete("/triggers/<trigger_id>")
@allow(Action.EDIT)
def delete(trigger_id: str) -> tuple[str, int]:
    _triggers().delete(_visible(trigger_id).id)
    return "", 204


def _signed(name: str, raw: bytes) -> Trigger:
    """The trigger a delivery is for, if its signature is right; the same 401 for every refusal."""
    found = _triggers().find(name)
    secret = UNKNOWN_SECRET if found is None else found[1]
    if not signature_matches(secret, raw, request.headers.get(SIGNATURE_HEADER)) or found is None:
        raise Unauthorized(REFUSED)
    return found[0]


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def _payload(raw: bytes) -> object:
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise BadRequest(
            "the delivery's body is not JSON: send the payload as application/json (GitHub: Content type "
            f"application/json): {error}"
        ) from error


def _comments(trigger: Trigger, delivery: str | None) -> str:
    event = (request.headers.get(EVENT_HEADER) or "")[:MAX_COMMENT_PART]
    seen = f"delivery '{delivery}'" if delivery else f"a delivery without {DELIVERY_HEADER}"
    return f"webhook trigger '{trigger.name}': {seen}" + (f" (event '{event}')" if event else "")


def _answer(fired: Fired) -> tuple[Response, int]:
    link = f"/api/executions/{fired.execution_id}"
    answer: dict[str, Any] = {"executionId": fired.execution_id, "executionLink": link, "duplicate": fired.duplicate}
    if fired.execution is not None:
        answer |= {"executionIndex": fired.execution.index, "status": fired.execution.status.value}
    response = jsonify(answer)
    response.headers["Location"] = link
    return response, 200 if fired.duplicate else 202


@blueprint.post("/triggers/<name>")
@public
def hook(name: str) -> tuple[Response, int]:
    """A delivery: checked against the trigger's secret, then its pipeline started with the bound input.

    GitHub's `ping` (sent when the hook is added) is answered once its signature is checked, and starts nothing.
    """
    raw = request.get_data(cache=True)
    trigger = _signed(name, raw)
    acting_in(trigger.project, f"trigger:{trigger.name}")
    payload = _payload(raw)
    if request.headers.get(EVENT_HEADER) == PING_EVENT:
        # GitHub's check that a new hook is reachable and signed right: nothing to run.
        return jsonify({"ping": True, "trigger": trigger.name}), 200
    delivery = request.headers.get(DELIVERY_HEADER)
    if problem := delivery_problem(delivery):
        raise BadRequest(f"{DELIVERY_HEADER}: {problem}")
    given = bind_delivery(trigger.input, payload, dict(request.headers.items()))
    fired = _triggers().fire(services().engine, trigger, given, delivery, _comments(trigger, delivery))
    return _answer(fired)
