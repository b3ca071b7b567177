"""Kubernetes ``Status`` objects and the emulator's single error tree, rooted at ``ApiError``."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]


class ApiError(Exception):
    """A failed API request, answered with a ``kind: Status`` body and the class's HTTP code and reason."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: JsonObject | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> JsonObject:
        """The ``Status`` object a real API server sends for this failure."""
        body: JsonObject = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(ApiError):
    """A malformed request: bad JSON, bad selector, mismatched names."""

    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    """A request without the bearer token the emulator was told to require."""

    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    """A request the cluster refuses, such as creating in a terminating namespace."""

    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    """An object, namespace or URL that does not exist."""

    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    """A verb the addressed resource does not support."""

    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    """A create of a name that is taken."""

    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    """A write whose ``resourceVersion`` precondition is stale."""

    code = 409
    reason = "Conflict"


class Expired(ApiError):
    """A watch from a ``resourceVersion`` older than the kept event history."""

    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    """A body in a content type the verb does not accept."""

    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    """An object that fails validation; ``details.causes`` names each bad field."""

    code = 422
    reason = "Invalid"


class TooManyRequests(ApiError):
    """An injected throttling answer."""

    code = 429
    reason = "TooManyRequests"


class InternalError(ApiError):
    """An injected or unexpected server failure."""

    code = 500
    reason = "InternalError"


class ServiceUnavailable(ApiError):
    """An injected unavailability answer."""

    code = 503
    reason = "ServiceUnavailable"


_BY_CODE: dict[int, type[ApiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Expired,
        Invalid,
        TooManyRequests,
        InternalError,
        ServiceUnavailable,
    )
}


def error_for_code(code: int, message: str) -> ApiError:
    """An ``ApiError`` answering with ``code``, used for injected faults."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    error = ApiError(message)
    error.code = code
    return error


def qualified_resource(plural: str, group: str) -> str:
    """``deployments.apps`` or ``pods``: how the API server names a resource in messages."""
    return f"{plural}.{group}" if group else plural


def _details(plural: str, group: str, name: str) -> JsonObject:
    details: JsonObject = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def not_found(plural: str, group: str, name: str) -> NotFound:
    """``deployments.apps "x" not found``."""
    message = f'{qualified_resource(plural, group)} "{name}" not found'
    return NotFound(message, details=_details(plural, group, name))


def already_exists(plural: str, group: str, name: str) -> AlreadyExists:
    """``deployments.apps "x" already exists``."""
    message = f'{qualified_resource(plural, group)} "{name}" already exists'
    return AlreadyExists(message, details=_details(plural, group, name))


def conflict(plural: str, group: str, name: str) -> Conflict:
    """The optimistic-concurrency failure of a write carrying a stale ``resourceVersion``."""
    message = (
        f'Operation cannot be fulfilled on {qualified_resource(plural, group)} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return Conflict(message, details=_details(plural, group, name))


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> Invalid:
    """A validation failure; each cause is ``(reason, field, message)`` as in ``details.causes``."""
    parts = [f"{field}: {message}" for _, field, message in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    kind_name = f"{kind}.{group}" if group else kind
    details: JsonObject = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": reason, "message": message, "field": field} for reason, field, message in causes],
    }
    if group:
        details["group"] = group
    return Invalid(f'{kind_name} "{name}" is invalid: {joined}', details=details)


def success(plural: str, group: str, name: str, uid: str) -> JsonObject:
    """The ``status: Success`` answer to a delete."""
    details = _details(plural, group, name)
    details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
