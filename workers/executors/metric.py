"""The METRIC task: a metric gate, as Argo Rollouts' analysis runs one, against Prometheus's HTTP API.

Each attempt takes one measurement: `GET <url>/api/v1/query?query=...`, then the conditions decide its phase
(`judge`). Between measurements the task run goes back to its queue with a countdown of `interval`, carrying the
measurements so far in its state: no worker sleeps through the wait. `verdict` decides, as Argo does, when the
gate is over: as soon as failures exceed `failureLimit` or inconclusive measurements (and errors) exceed
`inconclusiveLimit` it fails; after `count` measurements within both limits it succeeds. Every measurement is
kept in the output, whichever way it ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from orchestrator import expressions
from orchestrator.bindings import split_path, walk
from orchestrator.errors import BindingError, EndpointError, ExpressionError
from orchestrator.fields import bound_number
from orchestrator.tasktypes import METRIC_LIMITS, METRIC_RESULT
from workers.egress import EgressDenied
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall, Waiting
from workers.executors.rest import request_problem
from workers.http import HttpClient, HttpResponse

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR = "Successful", "Failed", "Inconclusive", "Error"
DEFAULT_INTERVAL_SECONDS = 60.0
DEFAULT_COUNT = 1
QUERY_PATH = "/api/v1/query"

Value = float | list[float] | None
Lookup = Callable[[str], object]


@dataclass(frozen=True)
class MetricSettings:
    """How many measurements to take, how long apart, and how many failed and inconclusive ones to tolerate."""

    interval: float
    count: int
    failure_limit: int
    inconclusive_limit: int

    @classmethod
    def read(cls, task_input: Mapping[str, Any]) -> MetricSettings:
        """From a resolved input; raises ValueError naming a value that is not a usable number.

        A bound number is held to the limits a written one is checked against when the pipeline is saved.
        """
        numbers = {name: bound_number(limit, name, task_input.get(name)) for name, limit in METRIC_LIMITS.items()}
        interval, count = numbers["interval"], numbers["count"]
        return cls(
            DEFAULT_INTERVAL_SECONDS if interval is None else float(interval),
            DEFAULT_COUNT if count is None else int(count),
            int(numbers["failureLimit"] or 0),
            int(numbers["inconclusiveLimit"] or 0),
        )


@dataclass(frozen=True)
class Conditions:
    """A METRIC task's success and failure conditions, as written (either may be absent)."""

    success: str | None
    failure: str | None

    @classmethod
    def read(cls, task_input: Mapping[str, Any]) -> Conditions:
        def text(name: str) -> str | None:
            value = task_input.get(name)
            return str(value) if value not in (None, "") else None

        return cls(text("successCondition"), text("failureCondition"))


def judge(value: Value, conditions: Conditions, lookup: Lookup) -> tuple[str, str]:
    """The phase of one measurement of `value` and why, as Argo decides it.

    With both conditions: failure met -> Failed, else success met -> Successful, else Inconclusive. With only a
    success condition, not meeting it fails; with only a failure condition, not meeting it succeeds. No value
    (the query matched no series) is Inconclusive; a condition that cannot be evaluated is an Error.
    """
    if value is None:
        return INCONCLUSIVE, "the query returned no data"

    def resolve(reference: str) -> object:
        head, *path = split_path(reference)
        if head == METRIC_RESULT:
            return walk(value, tuple(path), METRIC_RESULT)
        return lookup(reference)

    try:
        failed = conditions.failure is not None and expressions.check(conditions.failure, resolve)
        succeeded = conditions.success is not None and expressions.check(conditions.success, resolve)
    except (ExpressionError, BindingError) as error:
        return ERROR, error.message
    if failed:
        return FAILED, f"failureCondition {conditions.failure!r} met"
    if succeeded:
        return SUCCESSFUL, f"successCondition {conditions.success!r} met"
    if conditions.success is None:
        return SUCCESSFUL, f"failureCondition {conditions.failure!r} not met"
    if conditions.failure is None:
        return FAILED, f"successCondition {conditions.success!r} not met"
    return INCONCLUSIVE, "neither condition met"


def verdict(measurements: Sequence[Mapping[str, Any]], settings: MetricSettings) -> tuple[bool | None, str]:
    """Whether the gate has passed (True), failed (False) or goes on (None), and a summary of the count."""
    phases = [str(item.get("phase")) for item in measurements]
    failures = phases.count(FAILED)
    inconclusive = phases.count(INCONCLUSIVE) + phases.count(ERROR)
    summary = (
        f"{len(phases)} of {settings.count} measurements: {phases.count(SUCCESSFUL)} successful, "
        f"{failures} failed (limit {settings.failure_limit}), "
        f"{inconclusive} inconclusive or errors (limit {settings.inconclusive_limit})"
    )
    if failures > settings.failure_limit or inconclusive > settings.inconclusive_limit:
        return False, summary
    if len(phases) >= settings.count:
        return True, summary
    return None, summary


def query_value(response: HttpResponse) -> Value:
    """The value of an instant query's answer: a number for one sample, a list for several, None for none.

    Raises EndpointError for an error answer, a range vector or a string, or a sample that is NaN or infinite
    (no condition can be meant for those, and JSON cannot hold them).
    """
    body = response.json if isinstance(response.json, Mapping) else {}
    if body.get("status") != "success" or not response.ok:
        detail = body.get("error") or response.body[:200] or "no body"
        raise EndpointError(f"Prometheus answered {response.status_code}: {detail}")
    data = body.get("data")
    if not isinstance(data, Mapping):
        data = {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return _sample(result)
    if kind == "vector" and isinstance(result, list):
        values = [_sample(item.get("value") if isinstance(item, Mapping) else None) for item in result]
        if not values:
            return None
        return values[0] if len(values) == 1 else values
    raise EndpointError(f"the query gave a {kind or 'malformed'} result, not an instant vector or a scalar")


def _sample(pair: object) -> float:
    """A `[timestamp, "value"]` pair's value."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise EndpointError(f"a sample is not a [time, value] pair: {str(pair)[:100]}")
    try:
        number = float(pair[1])
    except (TypeError, ValueError):
        raise EndpointError(f"a sample's value is not a number: {str(pair[1])[:100]}") from None
    if not math.isfinite(number):
        raise EndpointError(f"a sample's value is {pair[1]}")
    return number


def query_url(base: str, query: str) -> str:
    """The instant-query URL of a Prometheus server at `base` (which may sit under a path prefix)."""
    return f"{base.rstrip('/')}{QUERY_PATH}?{urlencode({'query': query})}"


class MetricExecutor:
    """Runs METRIC tasks."""

    def __init__(self, http: HttpClient, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.http = http
        self.clock = clock

    def execute(self, call: TaskCall) -> Outcome:
        try:
            settings = MetricSettings.read(call.input)
        except ValueError as error:
            return Failed(str(error))
        url, query = call.input.get("url"), call.input.get("query")
        problem = request_problem(url, None)
        if problem is not None:
            return Failed(problem)
        if not isinstance(query, str) or not query.strip():
            return Failed(f"query must be a PromQL query, not {query!r}")
        assert isinstance(url, str)
        kept = call.state.get("measurements")
        measurements = [*kept] if isinstance(kept, list) else []
        try:
            measurement = self._measure(query_url(url, query), Conditions.read(call.input), call.lookup)
        except EgressDenied as error:
            # Not a passing failure of the server: measuring again would be refused again.
            return Failed(error.message, {"measurements": measurements, "status": "FAILED"})
        measurements.append(measurement)
        passed, summary = verdict(measurements, settings)
        output = {"measurements": measurements}
        if passed is True:
            return Succeeded(output | {"status": "COMPLETED"})
        if passed is False:
            return Failed(f"metric gate failed after {summary}", output | {"status": "FAILED"})
        last = f"{measurement['phase']}: {measurement.get('message', '')}"
        return Waiting(settings.interval, {"measurements": measurements}, f"{summary}; last {last}")

    def _measure(self, url: str, conditions: Conditions, lookup: Lookup) -> dict[str, Any]:
        """One measurement: when, what value, its phase and why."""
        at = self.clock().isoformat()
        try:
            value = query_value(self.http.request("get", url))
        except EgressDenied:
            raise
        except EndpointError as error:
            # Prometheus away, or an answer with no instant value in it: an error measurement, not a verdict.
            return {"at": at, "value": None, "phase": ERROR, "message": error.message}
        phase, message = judge(value, conditions, lookup)
        return {"at": at, "value": value, "phase": phase, "message": message}
