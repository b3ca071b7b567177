"""The audit trail over HTTP: every request that asked to change something is recorded after it is answered,
and admins read the trail of their projects (`GET /api/audit`)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, jsonify, request

from api.auth import API_PREFIX, allow, audited, visible_project
from api.serialize import timestamp
from api.services import services
from orchestrator.audit import Entry
from orchestrator.errors import BadRequest
from orchestrator.policy import Action

log = logging.getLogger(__name__)

blueprint = Blueprint("audit", __name__)

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOTE = "audit_note"
MAX_LIMIT = 1000


def entry_view(entry: Entry) -> dict[str, object]:
    return {
        "id": entry.id,
        "at": timestamp(entry.at),
        "actor": entry.actor,
        "project": entry.project,
        "method": entry.method,
        "path": entry.path,
        "route": entry.route,
        "status": entry.status,
        "note": entry.note,
    }


def note(text: str) -> None:
    """Have the current request's audit entry say `text` too (what its answer alone does not say)."""
    setattr(g, NOTE, text)


def record(response: Response) -> Response:
    """After every `/api` request or page form that may change something: one audit entry, whatever the answer was.

    Never turns an answer into an error: if the entry cannot be written (the database is away, which the
    answer most likely says already), that is logged and the answer goes out as it is.
    """
    if request.method not in CHANGES or not (request.path.startswith(API_PREFIX) or request.blueprint == "web"):
        return response
    actor, project = audited()
    try:
        services().audit.record(
            actor=actor,
            project=project,
            method=request.method,
            path=request.path,
            route=request.endpoint or "",
            status=response.status_code,
            note=g.get(NOTE),
        )
    except Exception as error:  # the answer matters more than its audit entry
        log.warning("audit entry for %s %s not written: %s", request.method, request.path, type(error).__name__)
    return response


def _whole(name: str, default: int | None, maximum: int) -> int | None:
    text = request.args.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) > maximum:
        raise BadRequest(f"'{name}' must be a whole number from 0 to {maximum}, not {text!r}")
    return int(text)


@blueprint.get("/audit")
@allow(Action.ADMINISTER)
def list_() -> Response:
    """Newest first; `?project=`, `?limit=` (at most 1000) and `?before=<id>` to page back."""
    project = visible_project(request.args.get("project") or None)
    limit = _whole("limit", 100, MAX_LIMIT) or 0
    entries = services().audit.list(project, limit, _whole("before", None, 2**62))
    return jsonify([entry_view(entry) for entry in entries])
