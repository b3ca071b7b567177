"""What request handlers work with: the store and the engine of this API process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from celery import Celery
from flask import current_app, request

from orchestrator.audit import AuditTrail
from orchestrator.decoding import LONE_SURROGATE, lone_surrogate_path
from orchestrator.engine import Engine
from orchestrator.errors import BadRequest, Problem
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.tokens import Tokens

EXTENSION = "rollway"


@dataclass(frozen=True)
class Services:
    """The objects an API process uses, made once by `create_app`."""

    settings: Settings
    store: Store
    engine: Engine
    celery: Celery
    tokens: Tokens
    audit: AuditTrail


def services() -> Services:
    """The services of the app handling the current request."""
    return cast(Services, current_app.extensions[EXTENSION])


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def json_object(allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """The request body as a JSON object; raises BadRequest naming what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except ValueError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise BadRequest("the body is nested too deeply") from error
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
    # A lone surrogate would pass every check as a str, then fail as it is encoded for the database or a header.
    if (path := lone_surrogate_path(body)) is not None:
        raise BadRequest(f"'{path}' {LONE_SURROGATE}", [Problem(path, LONE_SURROGATE)])
    if allowed is not None and (unknown := sorted(set(body) - allowed)):
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; expected: {', '.join(sorted(allowed))}")
    return body
