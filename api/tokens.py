"""The tokens API: admins make named tokens with a project and a role, list them (never their secrets), revoke them.

A token is shown once, in the answer that made it. A project's admin manages the tokens of its own project
only; the bootstrap token (`ROLLWAY_API_TOKEN`) manages every project's. No stored token reaches further than
one project, and no role is above admin, so a token can never be made wider than the admin who makes it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import allow, principal, project_in, requester, require_visible, visible_project
from api.serialize import timestamp
from api.services import json_object, services
from orchestrator.document import MAX_NAME_LENGTH
from orchestrator.errors import BadRequest, Problem
from orchestrator.policy import Action, Role
from orchestrator.tokens import Token
from orchestrator.transaction import new_id

blueprint = Blueprint("tokens", __name__)

FIELDS = frozenset({"name", "project", "role"})


def token_view(token: Token) -> dict[str, Any]:
    """A token as lists show it: what it may do and who made it, never the token or its hash."""
    return {
        "id": token.id,
        "name": token.name,
        "project": token.project,
        "role": token.role.value,
        "createdBy": token.created_by,
        "createdAt": timestamp(token.created_at),
        "lastUsedAt": timestamp(token.last_used_at),
    }


def _label_problem(value: object, required: bool) -> str | None:
    """Why a name or project is not usable, or None when it is."""
    if value is None or value == "":
        return "is required" if required else None
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if len(value) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters, not {len(value)}"
    if value != value.strip():
        return "must not have leading or trailing spaces"
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        return "must not contain control characters"
    return None


def _role_problem(value: object) -> str | None:
    if value in tuple(Role):
        return None
    return f"must be one of {', '.join(Role)}, not {value!r}"


def _read_request() -> tuple[str, Role, str]:
    """(name, role, project) of a request to make a token; 400 naming every bad field."""
    body = json_object(FIELDS)
    found = {
        "name": _label_problem(body.get("name"), required=True),
        "project": _label_problem(body.get("project"), required=False),
        "role": _role_problem(body.get("role")),
    }
    problems = [Problem(field, message) for field, message in found.items() if message is not None]
    if problems:
        summary = "; ".join(str(problem) for problem in problems)
        raise BadRequest(f"the token request has {len(problems)} problem(s): {summary}", problems)
    return str(body["name"]), Role(body["role"]), project_in(body)


@blueprint.post("/tokens")
@allow(Action.ADMINISTER)
def create() -> tuple[Response, int]:
    """Make a token in a project the caller administers; the answer is the only time its secret is shown."""
    name, role, project = _read_request()
    token, secret = services().tokens.add(new_id(), name, project, role, requester())
    return jsonify(token_view(token) | {"token": secret}), 201


@blueprint.get("/tokens")
@allow(Action.ADMINISTER)
def list_() -> Response:
    found = services().tokens.list(visible_project(request.args.get("project") or None))
    return jsonify([token_view(token) for token in found])


@blueprint.delete("/tokens/<token_id>")
@allow(Action.ADMINISTER)
def revoke(token_id: str) -> tuple[str, int]:
    """Revoke a token: every later request that presents it is refused with 401."""
    tokens = services().tokens
    require_visible(tokens.get(token_id).project, f"token with id '{token_id}'")
    tokens.revoke(token_id)
    return "", 204


@blueprint.get("/whoami")
@allow(Action.READ)
def whoami() -> Response:
    """Who the presented token is: its name, role and project (null: every project). The CLI asks this to know
    where a document without a project goes."""
    caller = principal()
    return jsonify({"name": caller.name, "role": caller.role.value, "project": caller.project})
