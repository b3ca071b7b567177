"""The user operations API: what runs wait for a person to answer, and the answers.

Listing and reading need the read role; answering needs the run role, and a RESTRICTED operation (a non-admin's
run about to use a restricted variable or endpoint) an admin of its project, an APPROVAL (a UserOperation task)
one of its listed approvers or an admin.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import allow, principal, requester, require_visible, visible_project
from api.serialize import timestamp
from api.services import json_object, services
from orchestrator.errors import Forbidden
from orchestrator.policy import Action
from orchestrator.useroperations import UserOperation, UserOperations, answer_from_body, answer_refusal, parse_status

blueprint = Blueprint("useroperations", __name__)


def operations() -> UserOperations:
    """The user operations table of this API process."""
    return UserOperations(services().store.engine)


def operation_view(operation: UserOperation) -> dict[str, Any]:
    return {
        "id": operation.id,
        "kind": operation.kind.value,
        "status": operation.status.value,
        "summary": operation.summary,
        "project": operation.project,
        "pipeline": operation.pipeline,
        "executionId": operation.execution_id,
        "executionIndex": operation.execution_index,
        "executionLink": f"/api/executions/{operation.execution_id}",
        "stage": operation.stage,
        "task": operation.task,
        "taskRunId": operation.task_run_id,
        "requestedBy": operation.requested_by,
        "respondedBy": operation.responded_by,
        "comments": operation.comments,
        "createdAt": timestamp(operation.created_at),
        "respondedAt": timestamp(operation.responded_at),
        "approvers": list(operation.approvers),
        "approverGroups": list(operation.approver_groups),
        "description": operation.description,
        "expiresAt": timestamp(operation.expires_at),
    }


def _visible(operation_id: str) -> UserOperation:
    operation = operations().get(operation_id)
    require_visible(operation.project, f"user operation with id '{operation_id}'")
    return operation


@blueprint.get("/user-operations")
@allow(Action.READ)
def list_() -> Response:
    """Newest first; `?status=ACTIVE` for those still waiting (INACTIVE for the others), `?project=` for one project."""
    status = parse_status(request.args.get("status"))
    found = operations().list(visible_project(request.args.get("project") or None), status)
    return jsonify([operation_view(operation) for operation in found])


@blueprint.get("/user-operations/<operation_id>")
@allow(Action.READ)
def get(operation_id: str) -> Response:
    return jsonify(operation_view(_visible(operation_id)))


@blueprint.post("/user-operations/<operation_id>")
@allow(Action.RUN)
def answer(operation_id: str) -> Response:
    """`{"action": "approve"|"reject", "comments": "..."}`; 409 when it was answered or canceled already."""
    approve, comments = answer_from_body(json_object())
    return jsonify(operation_view(respond(operation_id, approve, comments)))


def respond(operation_id: str, approve: bool, comments: str) -> UserOperation:
    """The caller's answer to a user operation it sees: 403 when it may not answer this one, 409 when it was
    answered or canceled already."""
    operation = _visible(operation_id)
    if (refusal := answer_refusal(operation, principal().is_admin, requester())) is not None:
        raise Forbidden(refusal)
    return services().engine.respond(operation, approve, requester(), comments)
