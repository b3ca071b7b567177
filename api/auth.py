"""The bearer-token check in front of every `/api` call."""

from __future__ import annotations

import hmac

from flask import g, request

from api.services import services
from orchestrator.errors import Unauthorized

BOOTSTRAP_USER = "admin"


def check_token() -> None:
    """Reject the request unless it carries the bootstrap token; an API with no token set is open."""
    expected = services().settings.api_token
    if expected is None:
        g.requester = "anonymous"
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    g.requester = BOOTSTRAP_USER
