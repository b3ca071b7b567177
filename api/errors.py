"""How errors become HTTP answers: one place, one JSON shape, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

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
        if error.http_status >= 500:
            log.error("internal error: %s", error.message)
        return error_response(error.http_status, error.code, error.message, [item.as_dict() for item in error.details])

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        return error_response(error.code or 500, code, error.description or error.name or "error")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal", "internal error; the server log has the details")
