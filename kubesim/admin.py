"""The emulator's own HTTP routes under ``/kubesim/``: image failure lists, what Job commands do, and injected
request faults."""

from __future__ import annotations

import json
import threading
from typing import Any

from kubesim.commands import CommandPolicy
from kubesim.images import ImagePolicy
from kubesim.status import ApiError, BadRequest, JsonObject, MethodNotAllowed, NotFound, error_for_code

PREFIX = "/kubesim/"


class FaultInjector:
    """Makes the next N API requests fail with a chosen HTTP status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = 500
        self._remaining = 0
        self._retry_after: int | str | None = None

    def arm(self, status: int, count: int, retry_after: int | str | None = None) -> None:
        """Fail the next ``count`` requests with ``status``, with a ``Retry-After`` header when given (seconds, or
        an HTTP-date as text)."""
        with self._lock:
            self._status, self._remaining, self._retry_after = status, count, retry_after

    def clear(self) -> None:
        """Stop failing requests."""
        self.arm(500, 0)

    def snapshot(self) -> JsonObject:
        """The pending faults."""
        with self._lock:
            return {"status": self._status, "count": self._remaining, "retryAfter": self._retry_after}

    def take(self) -> ApiError | None:
        """The error for this request, if one is due."""
        with self._lock:
            if self._remaining <= 0:
                return None
            self._remaining -= 1
            error = error_for_code(self._status, f"kubesim injected fault ({self._status})")
            if self._retry_after is not None:
                error.headers["Retry-After"] = str(self._retry_after)
                if isinstance(self._retry_after, int):
                    error.details = {"retryAfterSeconds": self._retry_after}
            return error


def handle_admin(
    method: str, path: str, body: bytes, images: ImagePolicy, faults: FaultInjector, *, commands: CommandPolicy
) -> JsonObject:
    """Serve one admin request; returns the JSON answer or raises ``ApiError``."""
    route = path[len(PREFIX) :].strip("/")
    if route == "commands":
        if method == "POST":
            data = _json_object(body)
            commands.set(_string_list(data, "failing"), _string_map(data, "variables"))
        elif method != "GET":
            raise MethodNotAllowed(f"{method} is not supported on {path}")
        return commands.snapshot()
    if route == "images":
        if method == "POST":
            data = _json_object(body)
            images.set(_string_list(data, "unpullable"), _string_list(data, "crashing"))
        elif method != "GET":
            raise MethodNotAllowed(f"{method} is not supported on {path}")
        return images.snapshot()
    if route == "faults":
        if method == "POST":
            data = _json_object(body)
            status, count = data.get("status", 500), data.get("count", 1)
            retry_after = data.get("retryAfter")
            if not isinstance(status, int) or not isinstance(count, int) or not 100 <= status <= 599:
                raise BadRequest('faults need an integer "status" (100-599) and "count"')
            faults.arm(status, count, retry_after if isinstance(retry_after, int | str) else None)
        elif method == "DELETE":
            faults.clear()
        elif method != "GET":
            raise MethodNotAllowed(f"{method} is not supported on {path}")
        return faults.snapshot()
    raise NotFound(f"no kubesim admin route {path}")


def _json_object(body: bytes) -> JsonObject:
    try:
        data = json.loads(body or b"{}")
    except ValueError as error:
        raise BadRequest(f"invalid JSON: {error}") from error
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _string_map(data: JsonObject, key: str) -> dict[str, str] | None:
    value: Any = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise BadRequest(f'"{key}" must be an object of variable names and their values as text')
    return value


def _string_list(data: JsonObject, key: str) -> list[str] | None:
    value: Any = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f'"{key}" must be a list of image names or patterns')
    return value
