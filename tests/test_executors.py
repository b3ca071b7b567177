"""REST, POLL and Condition executors against a real local HTTP server: one attempt each, no database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from orchestrator.bindings import Scope
from orchestrator.inputs import bind_task
from orchestrator.pipeline import Task
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall, Waiting
from workers.executors.condition import ConditionExecutor
from workers.executors.poll import PollExecutor
from workers.executors.rest import RestExecutor
from workers.http import HttpClient

SCOPE = Scope(input={"env": "prod", "count": "3"}, outputs={("Build", "Start"): {"responseJson": {"id": 42}}})


@pytest.fixture
def http() -> Iterator[HttpClient]:
    client = HttpClient(timeout=2)
    yield client
    client.close()


def call(task_type: str, task_input: dict[str, Any], state: dict[str, Any] | None = None) -> TaskCall:
    """The call a worker makes of a task queued in an execution whose scope is SCOPE."""
    bound = bind_task(Task("T", task_type, task_input), SCOPE)
    return TaskCall(task_type, bound.input, bound.bindings, state=state or {})


def test_rest_sends_the_method_headers_and_json_payload_and_records_the_answer(
    http: HttpClient, web: HTTPServer
) -> None:
    # Given a service that echoes what it received
    def echo(request: Request) -> Response:
        body = {"method": request.method, "token": request.headers.get("X-Token"), "json": request.get_json()}
        return Response(json.dumps(body), status=201, content_type="application/json", headers={"X-Seen": "yes"})

    web.expect_request("/items").respond_with_handler(echo)

    # When a REST task puts a JSON payload with a header
    outcome = RestExecutor(http).execute(
        call("REST", {"action": "PUT", "url": web.url_for("/items"), "headers": {"X-Token": 7}, "payload": {"a": 1}})
    )

    # Then it succeeded with Code Stream's output names
    assert isinstance(outcome, Succeeded)
    assert outcome.output["status"] == "COMPLETED" and outcome.output["responseCode"] == 201
    assert outcome.output["responseJson"] == {"method": "PUT", "token": "7", "json": {"a": 1}}
    assert outcome.output["responseHeaders"]["x-seen"] == "yes"
    assert json.loads(outcome.output["responseBody"]) == outcome.output["responseJson"]


@pytest.mark.parametrize(
    ("task_input", "reason"),
    [
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "http://127.0.0.1:9/"}, "failed"),
        ({"url": "http://example.com/", "action": "fetch"}, "action must be one of"),
    ],
)
def test_rest_fails_clearly_on_a_bad_url_an_unreachable_server_or_an_unknown_action(
    http: HttpClient, task_input: dict[str, Any], reason: str
) -> None:
    # When a REST task cannot even make its request, Then it fails saying why (given its input as a worker gets it,
    # so a bad value that no binding check stopped is still refused)
    outcome = RestExecutor(http).execute(TaskCall("REST", task_input, {}))
    assert isinstance(outcome, Failed) and reason in outcome.message


def poll_input(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "url": url,
        "pollCount": 3,
        "pollIntervalSeconds": 2,
        "exitCriteria": {"success": "${responseJson.state} == 'DONE'", "failure": "responseJson.state == 'BROKEN'"},
        **fields,
    }


def answering(web: HTTPServer, *answers: tuple[int, Any]) -> Iterator[None]:
    queue = iter(answers)

    def handle(_request: Request) -> Response:
        status, body = next(queue)
        text = body if isinstance(body, str) else json.dumps(body)
        return Response(text, status=status, content_type="application/json")

    web.expect_request("/job").respond_with_handler(handle)
    yield None


def run_polls(executor: PollExecutor, task_input: dict[str, Any], limit: int = 10) -> list[Outcome]:
    """Attempts until one is not Waiting, carrying the state from one to the next as the worker does."""
    outcomes: list[Outcome] = []
    state: dict[str, Any] = {}
    while len(outcomes) < limit:
        outcome = executor.execute(call("POLL", task_input, state))
        outcomes.append(outcome)
        if not isinstance(outcome, Waiting):
            break
        state = dict(outcome.state)
    return outcomes


def test_poll_waits_between_polls_and_succeeds_when_the_criteria_hold(http: HttpClient, web: HTTPServer) -> None:
    # Given a job that is running, then done
    next(answering(web, (200, {"state": "RUNNING"}), (200, {"state": "DONE", "n": 2})))

    # When polled
    outcomes = run_polls(PollExecutor(http), poll_input(web.url_for("/job")))

    # Then the first attempt asks to wait the interval, and the second succeeds with the last answer
    assert isinstance(outcomes[0], Waiting) and outcomes[0].countdown == 2.0 and "poll 1 of 3" in outcomes[0].message
    last = outcomes[-1]
    assert isinstance(last, Succeeded)
    assert last.output["iterationCount"] == 2 and last.output["responseJson"] == {"state": "DONE", "n": 2}


def test_poll_fails_on_its_failure_criteria_or_when_polls_run_out(http: HttpClient, web: HTTPServer) -> None:
    # Given a job that breaks at the second poll
    next(answering(web, (200, {"state": "RUNNING"}), (200, {"state": "BROKEN"})))

    # When polled, Then it fails on the failure criteria (a bare path works as well as a binding)
    broken = run_polls(PollExecutor(http), poll_input(web.url_for("/job")))[-1]
    assert isinstance(broken, Failed) and "failure criteria" in broken.message
    assert broken.output is not None and broken.output["status"] == "FAILED"

    # Given a job that never finishes, When polled three times, Then it fails saying so
    web.clear()
    next(answering(web, *[(200, {"state": "RUNNING"})] * 3))
    outcomes = run_polls(PollExecutor(http), poll_input(web.url_for("/job")))
    assert len(outcomes) == 3 and isinstance(outcomes[-1], Failed)
    assert "not met after 3 polls" in outcomes[-1].message


def test_poll_fails_on_an_error_answer_unless_told_to_ignore_failures(http: HttpClient, web: HTTPServer) -> None:
    # Given a job whose status page errors once before it is done
    next(answering(web, (503, "starting"), (200, {"state": "DONE"})))

    # When polled without ignoring failures, Then the error answer fails the task
    failed = run_polls(PollExecutor(http), poll_input(web.url_for("/job")))
    assert isinstance(failed[-1], Failed) and "answered 503" in failed[-1].message

    # When polled ignoring intermediate failures, Then it goes on and succeeds
    web.clear()
    next(answering(web, (503, "starting"), (200, {"state": "DONE"})))
    ignored = run_polls(PollExecutor(http), poll_input(web.url_for("/job"), ignoreFailure=True))
    assert isinstance(ignored[0], Waiting) and isinstance(ignored[-1], Succeeded)


def test_poll_criteria_can_read_the_pipeline_bindings(http: HttpClient, web: HTTPServer) -> None:
    # Given a criterion comparing the response with an earlier task's output
    next(answering(web, (200, {"build": 42})))
    task_input = poll_input(
        web.url_for("/job"), exitCriteria={"success": "${responseJson.build} == ${Build.Start.output.responseJson.id}"}
    )

    # When polled, Then it succeeds at once
    assert isinstance(run_polls(PollExecutor(http), task_input)[-1], Succeeded)


@pytest.mark.parametrize(
    ("text", "succeeded", "message"),
    [
        ("${input.env} == 'prod' and ${input.count} > 2", True, ""),
        ("${input.count} >= 10", False, "is false"),
        ("${input.env} == 'dev' or ${input.count} == 'x'", False, "is false"),
        ("${input.count} < null", False, "could not be evaluated: cannot compare"),
    ],
)
def test_condition_passes_fails_or_explains(text: str, succeeded: bool, message: str) -> None:
    # When a Condition task evaluates its expression against the execution's bindings
    outcome = ConditionExecutor().execute(call("Condition", {"condition": text}))

    # Then it succeeds when true, and otherwise fails saying why
    assert isinstance(outcome, Succeeded) is succeeded
    if not succeeded:
        assert isinstance(outcome, Failed) and message in outcome.message
