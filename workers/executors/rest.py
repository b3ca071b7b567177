"""The REST task: one HTTP request; an answer outside 2xx fails the task."""

from __future__ import annotations

from orchestrator.errors import ClusterError, EndpointError
from orchestrator.tasktypes import HTTP_ACTIONS
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall
from workers.executors.endpoint import EndpointLookup, is_relative, target
from workers.http import HttpClient, shown

IDEMPOTENCY_KEY = "Idempotency-Key"


def request_problem(url: object, headers: object) -> str | None:
    """What is wrong with a URL or headers only known once bindings are resolved, if anything.

    A path (`/...`) is a URL on the task's endpoint (see `endpoint.py`).
    """
    if not is_relative(url) and (not isinstance(url, str) or not url.lower().startswith(("http://", "https://"))):
        return f"url must be an http:// or https:// URL, not {url!r} (or a path on the task's endpoint)"
    if headers is not None and not isinstance(headers, dict):
        return f"headers must be an object, not {headers!r}"
    return None


class RestExecutor:
    """Runs REST tasks; a `url` that is a path goes through the task's endpoint, with its credentials."""

    def __init__(self, http: HttpClient, endpoints: EndpointLookup | None = None) -> None:
        self.http = http
        self.endpoints = endpoints

    def execute(self, call: TaskCall) -> Outcome:
        action = str(call.input.get("action") or "get").lower()
        url, headers = call.input.get("url"), call.input.get("headers")
        problem = request_problem(url, headers)
        if action not in HTTP_ACTIONS:
            problem = f"action must be one of {', '.join(HTTP_ACTIONS)}, not {action!r}"
        if problem is not None:
            return Failed(problem)
        assert isinstance(url, str)
        # One key for every attempt of this run: an endpoint that honours it performs a repeated request once.
        sent = {IDEMPOTENCY_KEY: call.run_id, **(headers or {})} if call.run_id else dict(headers or {})
        try:
            where = target(url, call.endpoints, self.endpoints)
            response = self.http.request(
                action, where.url, {**sent, **where.headers}, call.input.get("payload"), where.tls
            )
        except (ClusterError, EndpointError) as error:
            return Failed(error.message, {"status": "FAILED"})
        output = {"status": "COMPLETED" if response.ok else "FAILED", **response.as_output()}
        if not response.ok:
            return Failed(f"{action.upper()} {shown(where.url)} answered {response.status_code}", output)
        return Succeeded(output)
