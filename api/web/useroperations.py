"""The User operations page: what runs wait for a person to answer, answered here with comments.

It reads and answers through the API's own functions: the same projects, approvers and refusals.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api import useroperations as api_operations
from api.auth import allow, visible_project
from api.web.blueprint import blueprint
from orchestrator.errors import RollwayError
from orchestrator.policy import Action
from orchestrator.useroperations import OperationStatus, answer_from_body

# How many answered (or expired, or canceled) operations the page lists under the pending ones.
RECENT_ANSWERED = 30


@blueprint.get("/user-operations")
@allow(Action.READ)
def user_operations() -> str:
    project = visible_project(None)
    table = api_operations.operations()
    done = [status for status in OperationStatus if status is not OperationStatus.ACTIVE]
    pending = table.list(project, [OperationStatus.ACTIVE])
    answered = table.list(project, done, limit=RECENT_ANSWERED)
    return render_template(
        "user_operations.html",
        pending=[api_operations.operation_view(operation) for operation in pending],
        answered=[api_operations.operation_view(operation) for operation in answered],
    )


@blueprint.post("/user-operations/<operation_id>")
@allow(Action.RUN)
def answer_operation(operation_id: str) -> Response:
    back = redirect(url_for("web.user_operations"))
    try:
        approve, comments = answer_from_body(
            {"action": request.form.get("action"), "comments": request.form.get("comments", "")}
        )
        answered = api_operations.respond(operation_id, approve, comments)
    except RollwayError as error:
        flash(error.message, "error")
        for problem in error.details:
            flash(f"{problem.path}: {problem.message}", "error")
        return back
    verb = "approved" if approve else "rejected"
    flash(f"{answered.pipeline} #{answered.execution_index} · {answered.stage}.{answered.task}: {verb}", "info")
    return back
