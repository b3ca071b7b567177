"""The Executions pages: the list (live through server-sent events), one execution's detail, and what a person
does to one (cancel, pause, resume, roll back, rerun).

The pages read and act through the API's own handlers, so they see, redact and refuse exactly as the API does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import current_app, flash, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from api import executions as api_executions
from api import pipelines as api_pipelines
from api.auth import allow, visible_project
from api.services import services
from api.web.blueprint import STREAM_SLOTS, StreamSlots, blueprint
from orchestrator.errors import RollwayError
from orchestrator.feed import ActivityFeed
from orchestrator.policy import Action
from orchestrator.status import ExecutionStatus

log = logging.getLogger(__name__)

FILTERS = ("pipeline", "project", "status", "rollback")
PAGE_SIZE = 50
# A stream ends after this long and the browser's EventSource reconnects: no request holds a thread for ever.
STREAM_SECONDS = 55.0
STREAM_POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
ACTIONS = {
    "cancel": api_executions.cancel,
    "pause": api_executions.pause,
    "resume": api_executions.resume,
    "rollback": api_executions.rollback,
    "rerun": api_executions.rerun,
}
# Which actions an execution's status offers (the engine still decides; a stale page gets the API's 409 message).
OFFERED = {
    "cancel": {"NOT_STARTED", "QUEUED", "RUNNING", "WAITING", "PAUSED"},
    "pause": {"RUNNING", "WAITING"},
    "resume": {"PAUSED"},
    "rollback": {"COMPLETED", "FAILED", "ROLLBACK_FAILED"},
    "rerun": {"COMPLETED", "FAILED", "CANCELED", "ROLLBACK_COMPLETED", "ROLLBACK_FAILED"},
}


def _listed() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api_executions.list_().get_json()
    return rows[:PAGE_SIZE]


@blueprint.get("/executions")
@allow(Action.READ)
def executions() -> str:
    pipelines = sorted({row["name"] for row in api_pipelines.list_().get_json()})
    return render_template(
        "executions.html",
        rows=_listed(),
        filters={name: request.args.get(name, "") for name in FILTERS},
        statuses=list(ExecutionStatus),
        pipelines=pipelines,
    )


@blueprint.get("/executions/rows")
@allow(Action.READ)
def execution_rows() -> str:
    """The list's rows alone: what the page swaps in when the stream says something changed."""
    return render_template("_execution_rows.html", rows=_listed())


@blueprint.get("/executions/stream")
@allow(Action.READ)
def execution_stream() -> Response:
    """Server-sent events: `change` with the ids of the executions that moved, fed by the execution event log."""
    store = services().store
    feed = ActivityFeed(store.engine)
    project = visible_project(None)
    given = request.headers.get("Last-Event-ID") or request.args.get("after") or ""
    after = int(given) if given.isdigit() else feed.latest_id()

    # Each open stream holds one of the server's threads: only so many at once (a third of `rollway serve
    # --threads`), so pages never starve the API; beyond that the pages poll instead.
    slots: StreamSlots = current_app.extensions[STREAM_SLOTS]
    if not slots.take():
        busy = Response("too many live pages on this server; the page refreshes itself instead", status=503)
        busy.headers["Retry-After"] = "30"
        return busy

    def events() -> Iterator[str]:
        try:
            yield from _changes(feed, project, after, lambda: store.disposed)
        except SQLAlchemyError as error:
            # The database went away mid-stream: end it; the browser reconnects once `retry` has passed.
            log.info("execution stream ended: the database is unavailable (%s)", type(error).__name__)

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    # The server closes the answer whether the stream ended or the browser went away: the slot comes back.
    response.call_on_close(slots.give_back)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _changes(feed: ActivityFeed, project: str | None, after: int, closing: Callable[[], bool]) -> Iterator[str]:
    """The stream's messages: `change` events after id `after`, a comment now and then while nothing moves; it
    ends after STREAM_SECONDS, or as soon as `closing()` says the server is shutting down."""
    yield "retry: 2000\n\n"
    cursor = after
    seen = frozenset(change.id for change in feed.changes_after(cursor, project) if change.id <= cursor)
    deadline = time.monotonic() + STREAM_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and not closing():
        changes = feed.changes_after(cursor, project, seen)
        if changes:
            cursor = max(cursor, *(change.id for change in changes))
            seen = frozenset({*seen, *(change.id for change in changes)})
            body = {
                "executions": sorted({change.execution_id for change in changes}),
                "statuses": {change.execution_id: change.status for change in changes},
            }
            yield f"id: {cursor}\nevent: change\ndata: {json.dumps(body)}\n\n"
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > HEARTBEAT_SECONDS:
            yield ": still here\n\n"
            quiet_since = time.monotonic()
        time.sleep(STREAM_POLL_SECONDS)


def _detail(execution_id: str) -> dict[str, Any]:
    view: dict[str, Any] = api_executions.get(execution_id).get_json()
    view["events"] = api_executions.events(execution_id).get_json()
    for stage in view["stages"]:
        by_name = {task["name"]: task for task in stage["tasks"]}
        stage["rows"] = [[by_name[name] for name in group if name in by_name] for group in stage["groups"]]
    view["offered"] = [action for action, statuses in OFFERED.items() if view["status"] in statuses]
    return view


@blueprint.get("/executions/<execution_id>")
@allow(Action.READ)
def execution(execution_id: str) -> str:
    template = "_execution_body.html" if request.args.get("fragment") else "execution.html"
    return render_template(template, execution=_detail(execution_id))


@blueprint.post("/executions/<execution_id>/<action>")
@allow(Action.RUN)
def act(execution_id: str, action: str) -> Response:
    handler = ACTIONS.get(action)
    if handler is None:
        flash(f"there is no action '{action}'; expected one of {', '.join(ACTIONS)}", "error")
        return redirect(url_for("web.execution", execution_id=execution_id))
    try:
        answer, _status = handler(execution_id)
    except RollwayError as error:
        flash(error.message, "error")
        return redirect(url_for("web.execution", execution_id=execution_id))
    body = answer.get_json()
    if action == "rerun":
        flash(f"rerun started as #{body['executionIndex']}", "info")
        return redirect(url_for("web.execution", execution_id=body["executionId"]))
    flash(f"{action}: execution is now {body.get('status')}", "info")
    return redirect(url_for("web.execution", execution_id=execution_id))
