"""The REST task: one HTTP request; an answer outside 2xx fails the task."""

from __future__ import annotations

from orchestrator.errors import EndpointError
from orchestrator.tasktypes import HTTP_ACTIONS
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall
from workers.http import HttpClient, shown

IDEMPOTENCY_KEY = "Idempotency-Key"


def request_problem(url: object, headers: object) -> str | None:
    """What is wrong with a URL or headers only known once bindings are resolved, if anything."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        return f"url must be an http:// or https:// URL, not {url!r}"
    if headers is not None and not isinstance(headers, dict):
        return f"headers must be an object, not {headers!r}"
    return None


class RestExecutor:
    """Runs REST tasks."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

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
        sent = {IDEMPOTENCY_KEY: call.run_id, **(headers or {})} if call.run_id else headers
        try:
            response = self.http.request(action, url, sent, call.input.get("payload"))
        except EndpointError as error:
            return Failed(error.message, {"status": "FAILED"})
        output = {"status": "COMPLETED" if response.ok else "FAILED", **response.as_output()}
        if not response.ok:
            return Failed(f"{action.upper()} {shown(url)} answered {response.status_code}", output)
        return Succeeded(output)
