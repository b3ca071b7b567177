"""Who is asking and whether they may: the bearer token check and the role rule of every `/api` route.

Every route declares the action it takes with `@allow(Action...)` (or `@public` for the webhook, which signs
its own requests). Before routing, the token is looked up and the role checked against that action: 401 with
no valid token, 403 when the role may not. Which project's objects a request touches is known only once the
handler has loaded them, so handlers call `require_visible` (404 for another project's objects) and lists
keep to `visible_project`. `tests/test_authorization.py` walks the route table, so a route without a rule,
or a handler that forgets the project, fails it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import current_app, g, request

from api.services import services
from api.web import session as web_session
from orchestrator.document import DEFAULT_PROJECT
from orchestrator.errors import BadRequest, Forbidden, NotFound, Unauthorized
from orchestrator.policy import Action, Principal, allows, bootstrap

API_PREFIX = "/api/"
RULE_ATTRIBUTE = "rollway_action"
PUBLIC = "public"
ANONYMOUS = "anonymous"
# Longer than a project name may be (200), so it matches no stored project.
NO_PROJECT = "-" * 201
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

View = TypeVar("View", bound=Callable[..., object])


def allow(action: Action) -> Callable[[View], View]:
    """Mark a view with the action it takes; the role check before routing reads it."""

    def mark(view: View) -> View:
        setattr(view, RULE_ATTRIBUTE, action)
        return view

    return mark


def public(view: View) -> View:
    """Mark a view that needs no bearer token (it authenticates its request itself)."""
    setattr(view, RULE_ATTRIBUTE, PUBLIC)
    return view


def route_rule(endpoint: str | None) -> Action | str | None:
    """The rule of a Flask endpoint: an Action, PUBLIC, or None when it has none (or there is no such route)."""
    view = current_app.view_functions.get(endpoint or "")
    return None if view is None else getattr(view, RULE_ATTRIBUTE, None)


def _authenticate() -> Principal:
    """The principal of the request's bearer token; for a read without one, of the web session's token."""
    header = request.headers.get("Authorization", "")
    if not header and request.method in SAFE_METHODS and (held := web_session.held_token()) is not None:
        # The pages' own scripts read the API with the session cookie; anything that changes state goes through
        # a page form, which checks its CSRF token.
        return authenticate(held)
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" and presented:
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    return authenticate(presented or None)


def authenticate(presented: str | None) -> Principal:
    """Who a presented token (None: no token) is; Unauthorized when it is none.

    Without ROLLWAY_API_TOKEN the API is open: no token means the anonymous admin.
    """
    settings = services().settings
    if settings.api_token is None and not presented:
        return bootstrap(ANONYMOUS)
    if not presented:
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    if settings.api_token is not None and hmac.compare_digest(presented.encode(), settings.api_token.encode()):
        return bootstrap()
    token = services().tokens.find(presented)
    if token is None:
        raise Unauthorized("the 'Authorization: Bearer <token>' header holds no valid token (unknown or revoked)")
    return token.principal


def check_token() -> None:
    """Authenticate an `/api` request and check its role may take the route's action.

    Runs before routing, so an unknown route under /api is refused like a known one: without a token nobody
    learns which routes exist. A route without a rule is refused outright: forgetting one never opens it.
    """
    if not request.path.startswith(API_PREFIX):
        return
    rule = route_rule(request.endpoint)
    if rule == PUBLIC:
        return
    g.principal = principal = _authenticate()
    if request.endpoint is None or request.endpoint not in current_app.view_functions:
        return  # no such route: Flask answers 404 (or 405) once the caller is known
    if not isinstance(rule, Action):
        raise Forbidden(f"route {request.endpoint} declares no permission rule; refused")
    if not allows(principal.role, rule):
        raise Forbidden(f"the {principal.role.value} role may not {rule.value} here")


def require(action: Action) -> Principal:
    """For a route outside /api that still needs a token (`/metrics`): who asks, if its role may take `action`.

    The same rule as the API's: with no ROLLWAY_API_TOKEN set and no token given it is open, like the API.
    """
    g.principal = found = _authenticate()
    if not allows(found.role, action):
        raise Forbidden(f"the {found.role.value} role may not {action.value} here")
    return found


def principal() -> Principal:
    """Who is making the current request."""
    found = g.get("principal")
    if not isinstance(found, Principal):
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    return found


def requester() -> str:
    """The name `requestBy` and events record for the current request."""
    found = g.get("principal")
    return found.name if isinstance(found, Principal) else ANONYMOUS


def acting_in(project: str, actor: str | None = None) -> None:
    """Note the project (and, for a request no token names, who) the current request acts for: the audit trail
    records them."""
    g.audit_project = project
    if actor is not None:
        g.audit_actor = actor


def audited() -> tuple[str, str | None]:
    """(actor, project) of the current request, as far as it got before it was answered.

    A request refused before its handler learnt the project (by the role check) is put in the caller's own
    project when it has one: the only project it could have acted in.
    """
    project = g.get("audit_project")
    if project is None and isinstance(found := g.get("principal"), Principal):
        project = found.project
    return str(g.get("audit_actor") or requester()), project


def require_visible(project: str, what: str) -> None:
    """404, worded like a missing object, unless the caller may see objects of `project`."""
    acting_in(project)
    if not principal().sees(project):
        raise NotFound(f"there is no {what}")


def visible_project(asked: str | None) -> str | None:
    """The project a list keeps to: the one asked for, held to the caller's own when it has one.

    None means every project (only for principals that see them all). A principal asking for a project it
    cannot see gets a project that matches nothing, so the list is empty rather than an error that confirms
    the project exists.
    """
    own = principal().project
    if own is None:
        return asked
    return own if asked in (None, own) else NO_PROJECT


def project_for_new(given: str | None) -> str:
    """The project a new object goes in: as given, or the caller's own; 403 for a project it cannot act in."""
    caller = principal()
    project = given if given else (caller.project or DEFAULT_PROJECT)
    acting_in(project)
    if not caller.sees(project):
        raise Forbidden(f"this token acts in project '{caller.project}' only, not '{project}'")
    return project


def project_in(body: Mapping[str, Any], field: str = "project") -> str:
    """`project_for_new` of a request body's project field; 400 when it is not a string.

    Checked before the rest of the body, so that nothing about another project (which of its endpoints or
    pipelines exist) can be learnt from the problems the body would have there.
    """
    given = body.get(field)
    if given is not None and not isinstance(given, str):
        raise BadRequest(f"'{field}' must be a string (a project name), not {type(given).__name__}")
    return project_for_new(given)
