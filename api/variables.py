"""The variables API: project variables for `${var.NAME}`; SECRET and RESTRICTED values are never returned.

Reading needs the read role, changing the edit role; a RESTRICTED variable is created, changed and deleted by
admins only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import allow, principal, project_for_new, require_visible, visible_project
from api.serialize import timestamp
from api.services import json_object, services
from orchestrator.errors import BadRequest, Forbidden, Problem
from orchestrator.gaps import VariableLookup
from orchestrator.policy import Action
from orchestrator.redaction import MASK
from orchestrator.transaction import new_id
from orchestrator.variables import Variable, Variables, VariableType, changed_variable, variable_from_body

blueprint = Blueprint("variables", __name__)


def variables() -> Variables:
    """The variables table of this API process."""
    store = services().store
    return Variables(store.engine, store.vault)


def variable_exists() -> VariableLookup:
    """What saving a pipeline checks its `${var.NAME}` bindings against."""
    return variables().exists


def variable_view(variable: Variable) -> dict[str, Any]:
    return {
        "id": variable.id,
        "name": variable.name,
        "project": variable.project,
        "type": variable.type.value,
        "value": MASK if variable.type.is_secret else variable.value,
        "description": variable.description,
        "createdAt": timestamp(variable.created_at),
        "updatedAt": timestamp(variable.updated_at),
    }


def _require_admin_for(kind: VariableType, change: str) -> None:
    if kind is VariableType.RESTRICTED and not principal().is_admin:
        raise Forbidden(f"only an admin may {change} a RESTRICTED variable")


def _visible(variable_id: str) -> Variable:
    variable = variables().get(variable_id)
    require_visible(variable.project, f"variable with id '{variable_id}'")
    return variable


@blueprint.post("/variables")
@allow(Action.EDIT)
def create() -> tuple[Response, int]:
    body = json_object()
    project = body.get("project")
    if project is not None and not isinstance(project, str):
        raise BadRequest("the variable has 1 problem(s)", [Problem("project", "must be a string")])
    variable = variable_from_body(body, new_id(), project_for_new(project))
    _require_admin_for(variable.type, "create")
    return jsonify(variable_view(variables().add(variable))), 201


@blueprint.get("/variables")
@allow(Action.READ)
def list_() -> Response:
    project = visible_project(request.args.get("project") or None)
    return jsonify([variable_view(item) for item in variables().list(project)])


@blueprint.get("/variables/<variable_id>")
@allow(Action.READ)
def get(variable_id: str) -> Response:
    return jsonify(variable_view(_visible(variable_id)))


@blueprint.patch("/variables/<variable_id>")
@allow(Action.EDIT)
def patch(variable_id: str) -> Response:
    """Change a variable's type, value or description; a secret's value left out stays as it was."""
    changes = json_object()
    current = _visible(variable_id)
    _require_admin_for(current.type, "change")
    changed = changed_variable(current, changes)
    _require_admin_for(changed.type, "change")
    return jsonify(variable_view(variables().change(current, changed, value_given="value" in changes)))


@blueprint.delete("/variables/<variable_id>")
@allow(Action.EDIT)
def delete(variable_id: str) -> tuple[str, int]:
    current = _visible(variable_id)
    _require_admin_for(current.type, "delete")
    variables().delete(variable_id)
    return "", 204
