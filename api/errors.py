"""How errors become HTTP answers: one place, one JSON shape, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from orchestrator import defaults
from orchestrator.errors import RollwayError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> Response:
    """`{"error": {"code", "message", "details"}}` with an HTTP status."""
    response = jsonify({"error": {"code": code, "message": message, "details": details or []}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Map the Rollway error tree, HTTP errors and anything unexpected to JSON answers."""

    @app.errorhandler(RollwayError)
    def _rollway(error: RollwayError) -> Response:
        if error.http_status == 503:
            return unavailable(error.message)
        if error.http_status >= 500:
            log.error("internal error: %s", error.message)
        return error_response(error.http_status, error.code, error.message, [item.as_dict() for item in error.details])

    @app.errorhandler(OperationalError)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(PoolTimeout)
    def _database_away(error: Exception) -> Response:
        # Refused, lost, timed out or cut by the watchdog: nothing the client sent, and worth asking again.
        log.warning("database unavailable: %s", str(error).strip().splitlines()[0] if str(error).strip() else error)
        return unavailable("the database cannot be reached right now; nothing was changed, try again shortly")

    @app.errorhandler(DBAPIError)
    def _database_error(error: DBAPIError) -> Response:
        if error.connection_invalidated:
            return _database_away(error)
        return _unexpected(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(error.code or 500, code, error.description or error.name or "error")
        # A 405 must name the allowed methods (RFC 9110); the HTML content type is not ours.
        response.headers.extend((name, value) for name, value in error.get_headers() if name.lower() != "content-type")
        return response

    @app.errorhandler(DataError)
    def _unstorable(error: DataError) -> Response:
        # A value from the request that the database cannot hold: a NUL character in PostgreSQL text, a name
        # longer than its column, NaN in a JSON column.
        reason = str(error.orig).splitlines()[0] if error.orig is not None else "a value cannot be stored"
        return error_response(400, "bad_request", f"the request holds a value the database cannot store: {reason}")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal", "internal error; the server log has the details")


def unavailable(message: str) -> Response:
    """503 with Retry-After: the database or the broker cannot be reached for now."""
    response = error_response(503, "unavailable", message)
    response.headers["Retry-After"] = str(defaults.RETRY_AFTER_SECONDS)
    return response
