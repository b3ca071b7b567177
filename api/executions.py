"""The executions API: list with filters, and the detail of one execution with its stages and tasks."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.auth import allow, requester, require_visible, visible_project
from api.serialize import child_view, event_view, execution_view, stages_view
from api.services import services
from orchestrator.errors import BadRequest
from orchestrator.execution import Execution
from orchestrator.policy import Action
from orchestrator.status import ExecutionStatus

blueprint = Blueprint("executions", __name__)

MAX_LIMIT = 1000


def _statuses(text: str | None) -> list[ExecutionStatus] | None:
    if not text:
        return None
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ExecutionStatus.__members__]
    if unknown:
        raise BadRequest(f"unknown status {', '.join(unknown)}; expected: {', '.join(ExecutionStatus)}")
    return [ExecutionStatus(name) for name in names]


def _flag(text: str | None, name: str) -> bool | None:
    if text is None or text == "":
        return None
    if text.lower() not in ("true", "false"):
        raise BadRequest(f"'{name}' must be true or false, not {text!r}")
    return text.lower() == "true"


def _number(text: str | None, name: str, default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)) or int(text) > maximum:
        raise BadRequest(f"'{name}' must be a whole number from 0 to {maximum}, not {text!r}")
    return int(text)


@blueprint.get("/executions")
@allow(Action.READ)
def list_() -> Response:
    args = request.args
    executions = services().store.list_executions(
        project=visible_project(args.get("project") or None),
        pipeline=args.get("pipeline") or None,
        status=_statuses(args.get("status")),
        rollback=_flag(args.get("rollback"), "rollback"),
        limit=_number(args.get("limit"), "limit", 100, MAX_LIMIT),
        offset=_number(args.get("offset"), "offset", 0, 10**9),
    )
    children = services().store.children(execution.id for execution in executions)
    return jsonify([execution_view(execution, children.get(execution.id, [])) for execution in executions])


@blueprint.get("/executions/<execution_id>")
@allow(Action.READ)
def get(execution_id: str) -> Response:
    store = services().store
    state = store.load_state(execution_id)
    require_visible(state.execution.project, f"execution with id '{execution_id}'")
    children = store.children([execution_id]).get(execution_id, [])
    view = execution_view(state.execution, children)
    view["children"] = [child_view(child) for child in children]
    view["stages"] = stages_view(state.pipeline, store.task_runs(execution_id))
    return jsonify(view)


@blueprint.get("/executions/<execution_id>/events")
@allow(Action.READ)
def events(execution_id: str) -> Response:
    """The execution's history, oldest first: every status change of it and of its task runs."""
    _visible_execution(execution_id)
    return jsonify([event_view(event) for event in services().store.events(execution_id)])


@blueprint.post("/executions/<execution_id>/cancel")
@allow(Action.RUN)
def cancel(execution_id: str) -> tuple[Response, int]:
    """Cancel a queued or running execution; 409 when its status does not allow it."""
    _visible_execution(execution_id)
    execution = services().engine.cancel(execution_id, requester())
    return jsonify(execution_view(execution)), 202


@blueprint.post("/executions/<execution_id>/pause")
@allow(Action.RUN)
def pause(execution_id: str) -> tuple[Response, int]:
    """Pause a running or waiting execution: nothing new starts, running tasks finish; 409 otherwise."""
    _visible_execution(execution_id)
    execution = services().engine.pause(execution_id, requester())
    return jsonify(execution_view(execution)), 202


@blueprint.post("/executions/<execution_id>/resume")
@allow(Action.RUN)
def resume(execution_id: str) -> tuple[Response, int]:
    """Resume a paused execution; 409 when it is not paused."""
    _visible_execution(execution_id)
    execution = services().engine.resume(execution_id, requester())
    return jsonify(execution_view(execution)), 202


def _visible_execution(execution_id: str) -> Execution:
    """An execution of a project the caller sees; 404, like a missing one, otherwise."""
    execution = services().store.get_execution(execution_id)
    require_visible(execution.project, f"execution with id '{execution_id}'")
    return execution
