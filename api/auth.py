"""The bearer-token check in front of every `/api` call."""

from __future__ import annotations

import hmac

from flask import g, request

from api.services import services
from orchestrator.errors import Unauthorized

BOOTSTRAP_USER = "admin"


API_PREFIX = "/api/"


def check_token() -> None:
    """Reject an `/api` request unless it carries the bootstrap token; an API with no token set is open.

    Runs before routing, so an unknown route under /api is refused like a known one: without a token
    nobody learns which routes exist.
    """
    if not request.path.startswith(API_PREFIX):
        return
    expected = services().settings.api_token
    if expected is None:
        g.requester = "anonymous"
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    g.requester = BOOTSTRAP_USER
