"""The pages' blueprint: who may see each page (the same `@allow` rules as the API), CSRF on every form, and
errors as pages rather than JSON."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from api.auth import PUBLIC, authenticate, route_rule
from api.web import session as web_session
from orchestrator.errors import Forbidden, RollwayError, Unauthorized
from orchestrator.policy import Action, Principal, allows
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

blueprint = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

STATIC = "web.static"
# The app's live-stream slots (see `register`).
STREAM_SLOTS = "rollway.web.streams"


class StreamSlots:
    """How many live streams an app may have open at once, and how many it has."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


# Code Stream's status colours: green done, red failed, amber rolling back or waiting, blue running, grey idle.
BADGES = {
    "COMPLETED": "ok",
    "ROLLBACK_COMPLETED": "rolledback",
    "FAILED": "bad",
    "ROLLBACK_FAILED": "bad",
    "CANCELED": "idle",
    "CANCELING": "warn",
    "ROLLING_BACK": "warn",
    "WAITING": "warn",
    "PAUSED": "warn",
    "RUNNING": "run",
    "QUEUED": "idle",
    "NOT_STARTED": "idle",
    "SKIPPED": "idle",
    "ACTIVE": "warn",
    "APPROVED": "ok",
    "REJECTED": "bad",
    "EXPIRED": "bad",
}


def register(app: Flask, settings: Settings, live_streams: int) -> None:
    """Serve the pages on `app`: session settings, template helpers, the blueprint, and how many live streams
    may be open at once (`live_streams`)."""
    web_session.configure(app, settings)
    app.extensions[STREAM_SLOTS] = StreamSlots(live_streams)
    app.register_blueprint(blueprint)


def page_principal() -> Principal:
    """Who the current page request is (set by the guard)."""
    found = g.get("principal")
    if not isinstance(found, Principal):
        raise Unauthorized("log in first")
    return found


def may(action: str) -> bool:
    """Whether the current page's viewer may take `action` (templates show only the buttons that work)."""
    found = g.get("principal")
    return isinstance(found, Principal) and allows(found.role, Action(action))


@blueprint.before_request
def _guard() -> Response | None:
    rule = route_rule(request.endpoint)
    if request.endpoint == STATIC or rule == PUBLIC:
        return None
    try:
        g.principal = principal = authenticate(web_session.held_token())
    except Unauthorized as error:
        log.info("page %s: %s; sent to log in", request.path, error.message)
        web_session.log_out()
        return redirect(url_for("web.login", next=local_target(request.full_path)))
    if not isinstance(rule, Action):
        raise Forbidden(f"page {request.endpoint} declares no permission rule; refused")
    if not allows(principal.role, rule):
        raise Forbidden(f"the {principal.role.value} role may not {rule.value} here")
    if request.method == "POST":
        web_session.check_csrf(request.form.get(web_session.CSRF_FIELD))
    return None


def local_target(target: str | None, default: str = "/executions") -> str:
    """`target` if it is a path on this site, else `default`: a login link never sends anyone elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target.rstrip("?") or default


@blueprint.app_template_global()
def csrf_token() -> str:
    return web_session.csrf_token()


@blueprint.app_template_global("may")
def _may(action: str) -> bool:
    return may(action)


@blueprint.app_template_global()
def has_page(endpoint: str) -> bool:
    """Whether this server serves the page `endpoint` (the menu lists only pages that exist)."""
    return endpoint in current_app.view_functions


@blueprint.app_template_global()
def viewer() -> Principal | None:
    found = g.get("principal")
    return found if isinstance(found, Principal) else None


@blueprint.app_template_filter()
def badge(status: str | None) -> str:
    return BADGES.get(status or "", "idle")


@blueprint.app_template_filter()
def when(stamp: str | None) -> str:
    """An API timestamp as a short UTC time."""
    moment = _parse(stamp)
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


@blueprint.app_template_filter()
def duration(view: dict[str, Any]) -> str:
    """How long a run took (or has taken so far), from its startedAt and finishedAt."""
    started = _parse(view.get("startedAt"))
    if started is None:
        return ""
    finished = _parse(view.get("finishedAt")) or datetime.now(UTC)
    return human_seconds((finished - started).total_seconds())


def human_seconds(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@blueprint.errorhandler(RollwayError)
def _problem(error: RollwayError) -> tuple[str, int]:
    if isinstance(error, Unauthorized):
        return render_template("error.html", status=401, message=error.message), 401
    return render_template("error.html", status=error.http_status, message=error.message), error.http_status


@blueprint.errorhandler(HTTPException)
def _http(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    return render_template("error.html", status=status, message=error.description or error.name), status
