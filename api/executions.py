"""The executions API: list with filters, the detail of one execution with its stages, tasks and children, and
what a person does to one: cancel it, roll it back by hand, rerun it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.auth import allow, principal, requester, require_visible, visible_project
from api.serialize import child_view, event_view, execution_view, notifications_view, stages_view
from api.services import services
from orchestrator.errors import BadRequest, Conflict, InputInvalid, NotFound
from orchestrator.execution import Execution, PipelineRecord
from orchestrator.policy import Action
from orchestrator.rerun import rerun_comments, rerun_input
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
    view["notifications"] = notifications_view(state.execution.project, store.notices(execution_id))
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


@blueprint.post("/executions/<execution_id>/rollback")
@allow(Action.RUN)
def rollback(execution_id: str) -> tuple[Response, int]:
    """Roll an ended execution back by hand: the rollback pipelines of the stages it deployed, newest first; 409
    unless it is COMPLETED, FAILED or ROLLBACK_FAILED and something it deployed has a rollback link."""
    _visible_execution(execution_id)
    engine = services().engine
    execution = engine.roll_back(execution_id, requester(), requested_by_admin=principal().is_admin)
    return jsonify(execution_view(execution)), 202


@blueprint.post("/executions/<execution_id>/rerun")
@allow(Action.RUN)
def rerun(execution_id: str) -> tuple[Response, int]:
    """Start the pipeline of an ended execution again with the same input; answered like a trigger."""
    execution = _visible_execution(execution_id)
    given = rerun_input(execution)
    record = _pipeline_of(execution)
    try:
        started = services().engine.trigger(
            record, given, rerun_comments(execution), requester(), requested_by_admin=principal().is_admin
        )
    except InputInvalid as error:
        raise Conflict(
            f"execution #{execution.index}'s input no longer fits pipeline '{record.name}': {error.message}",
            error.details,
        ) from error
    link = f"/api/executions/{started.id}"
    answer = {"executionId": started.id, "executionIndex": started.index, "executionLink": link}
    response = jsonify(answer | {"status": started.status.value})
    response.headers["Location"] = link
    return response, 202


def _pipeline_of(execution: Execution) -> PipelineRecord:
    """The saved pipeline an execution ran; 409 when it was deleted since."""
    gone = Conflict(f"the pipeline of execution #{execution.index}, '{execution.pipeline_name}', no longer exists")
    if execution.pipeline_id is None:
        raise gone
    try:
        return services().store.get_pipeline(execution.pipeline_id)
    except NotFound as error:
        raise gone from error


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
