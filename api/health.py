"""Liveness and readiness, for load balancers and orchestrators: `/healthz` answers while the process serves
requests; `/readyz` only while the database and the broker both answer (503 otherwise, naming which did not).

Neither needs a token, and neither says more than which part is down: no URL, host or credential of either.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api.auth import public
from api.services import services
from orchestrator import defaults

blueprint = Blueprint("health", __name__)

# How long readiness waits for the broker: a probe that hangs is itself a "not ready".
BROKER_TIMEOUT_SECONDS = 2


@blueprint.get("/healthz")
@public
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
@public
def readyz() -> tuple[Response, int]:
    checks = {"database": _database(), "broker": _broker()}
    ready = all(problem is None for problem in checks.values())
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {name: {"ok": problem is None, "message": problem or ""} for name, problem in checks.items()},
    }
    response = jsonify(body)
    if not ready:
        response.headers["Retry-After"] = str(defaults.RETRY_AFTER_SECONDS)
    return response, 200 if ready else 503


def _database() -> str | None:
    """Why the database is not usable now, or None."""
    try:
        with services().store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as error:  # whatever the driver or the watchdog raised: the answer is "not ready"
        return f"the database did not answer ({type(error).__name__})"
    return None


def _broker() -> str | None:
    """Why the broker cannot take messages now, or None."""
    try:
        with services().celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as error:  # kombu raises the transport's own errors
        return f"the broker did not answer ({type(error).__name__})"
    return None
