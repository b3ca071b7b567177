"""The POLL task: GET a URL until its exit criteria decide, at most `pollCount` times.

Each attempt polls once. Between polls the task run goes back to its queue with a countdown of
`pollIntervalSeconds`: no worker sleeps through the wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator import expressions
from orchestrator.bindings import split_path, walk
from orchestrator.errors import BindingError, ClusterError, EndpointError, ExpressionError
from orchestrator.fields import bound_number, read_flag
from orchestrator.tasktypes import POLL_LIMITS, RESPONSE_NAMES
from workers.egress import EgressDenied
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall, Waiting
from workers.executors.endpoint import EndpointLookup, target
from workers.executors.rest import request_problem
from workers.http import HttpClient, HttpResponse, shown

DEFAULT_POLL_COUNT = 10
DEFAULT_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class PollSettings:
    """How often to poll, how long to wait between polls, and whether a failed poll fails the task."""

    count: int
    interval: float
    ignore_failures: bool

    @classmethod
    def read(cls, task_input: Mapping[str, Any]) -> PollSettings:
        """From a resolved input; raises ValueError naming a value that is not a usable number.

        A bound number is held to the limits a written one is checked against when the pipeline is saved.
        """
        count = bound_number(POLL_LIMITS["pollCount"], "pollCount", task_input.get("pollCount"))
        interval = bound_number(
            POLL_LIMITS["pollIntervalSeconds"], "pollIntervalSeconds", task_input.get("pollIntervalSeconds")
        )
        return cls(
            DEFAULT_POLL_COUNT if count is None else int(count),
            DEFAULT_INTERVAL_SECONDS if interval is None else float(interval),
            read_flag("ignoreFailure", task_input.get("ignoreFailure")),
        )


class PollExecutor:
    """Runs POLL tasks; a `url` that is a path goes through the task's endpoint, with its credentials."""

    def __init__(self, http: HttpClient, endpoints: EndpointLookup | None = None) -> None:
        self.http = http
        self.endpoints = endpoints

    def execute(self, call: TaskCall) -> Outcome:
        try:
            settings = PollSettings.read(call.input)
        except ValueError as error:
            return Failed(str(error))
        url, headers = call.input.get("url"), call.input.get("headers")
        problem = request_problem(url, headers)
        if problem is not None:
            return Failed(problem)
        assert isinstance(url, str)
        iteration = int(call.state.get("iteration", 0)) + 1
        try:
            where = target(url, call.endpoints, self.endpoints)
        except ClusterError as error:
            # The endpoint is not named, gone, or its credentials unusable: polling again would not change that.
            return Failed(error.message, {"iterationCount": iteration, "status": "FAILED"})
        try:
            response = self.http.request("get", where.url, {**(headers or {}), **where.headers}, tls=where.tls)
        except EgressDenied as error:
            # Not a passing failure of the server: polling again would be refused again.
            return Failed(error.message, {"iterationCount": iteration, "status": "FAILED"})
        except EndpointError as error:
            return self._not_decided(settings, iteration, settings.ignore_failures, error.message, {})
        output: dict[str, Any] = {"iterationCount": iteration, **response.as_output()}
        decided = self._decide(call, response, output)
        if decided is not None:
            return decided
        if response.ok:
            return self._not_decided(settings, iteration, True, "exit criteria not met yet", output)
        note = f"GET {shown(where.url)} answered {response.status_code}"
        return self._not_decided(settings, iteration, settings.ignore_failures, note, output)

    @staticmethod
    def _not_decided(settings: PollSettings, iteration: int, go_on: bool, note: str, output: dict[str, Any]) -> Outcome:
        """Poll again later, unless this poll failed and failures are not ignored, or no polls are left."""
        output = {"iterationCount": iteration, **output}
        count = settings.count
        if not go_on:
            return Failed(f"poll {iteration} of {count} failed: {note}", output | {"status": "FAILED"})
        if iteration >= count:
            return Failed(f"exit criteria not met after {count} polls: {note}", output | {"status": "FAILED"})
        return Waiting(settings.interval, {"iteration": iteration}, f"poll {iteration} of {count}: {note}")

    def _decide(self, call: TaskCall, response: HttpResponse, output: dict[str, Any]) -> Outcome | None:
        criteria = call.input.get("exitCriteria") or {}

        def lookup(reference: str) -> object:
            head, *path = split_path(reference)
            if head in RESPONSE_NAMES:
                return walk(output[str(head)], tuple(path), str(head))
            return call.lookup(reference)

        for key, status in (("failure", "FAILED"), ("success", "COMPLETED")):
            condition = criteria.get(key)
            if not condition:
                continue
            try:
                met = expressions.check(str(condition), lookup)
            except (ExpressionError, BindingError):
                # A body without the field yet (still starting) is not a verdict; the next poll may have it.
                continue
            if met and key == "failure":
                return Failed(f"failure criteria {condition!r} met", output | {"status": status})
            if met:
                return Succeeded(output | {"status": status})
        return None
