"""Stories about the task types a pipeline may use and the checks on their input when a pipeline is saved."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from orchestrator.errors import Problem
from orchestrator.fields import is_bound
from orchestrator.tasktypes import RESPONSE_NAMES, TASK_TYPES, Runner, check_task_input
from workers.constants import QUEUES, queue_for
from workers.executors import build_executors
from workers.http import HttpClient

GOOD_POLL = {
    "url": "https://ci.example.com/builds/17",
    "pollCount": 10,
    "pollIntervalSeconds": 2.5,
    "ignoreFailure": True,
    "exitCriteria": {"success": "responseJson.done == true", "failure": "responseCode >= 500"},
}


def messages(type_name: str, task_input: Mapping[str, object]) -> dict[str, str]:
    """The problems with a task input, as {path: message}."""
    problems = check_task_input(type_name, task_input)
    assert len({problem.path for problem in problems}) == len(problems), problems
    return {problem.path: problem.message for problem in problems}


# -- REST


def test_a_rest_call_with_url_action_headers_and_payload_is_accepted() -> None:
    # Given a REST input using every field
    task_input = {
        "action": "post",
        "url": "https://ci.example.com/builds",
        "headers": {"Accept": "application/json", "X-Retries": 3},
        "payload": {"image": "nginx"},
    }
    # When it is checked
    # Then there is nothing to report
    assert check_task_input("REST", task_input) == []


def test_a_rest_call_without_an_action_is_a_get_and_the_action_may_be_upper_case() -> None:
    # Given REST inputs without an action, and with Code Stream's upper-case spelling
    # When they are checked
    # Then both are accepted
    assert check_task_input("REST", {"url": "http://a"}) == []
    assert check_task_input("REST", {"url": "http://a", "action": "DELETE"}) == []


def test_a_rest_call_needs_a_url() -> None:
    # Given REST inputs without a URL, and with a null one
    # When they are checked
    # Then the URL is reported as required either way
    assert check_task_input("REST", {"action": "get"}) == [Problem("url", "is required")]
    assert check_task_input("REST", {"url": None}) == [Problem("url", "is required")]


def test_a_rest_call_reports_its_action_url_headers_and_unknown_fields_together() -> None:
    # Given a REST input with four mistakes
    task_input = {"action": "fetch", "url": "ftp://files", "headers": {"X-Debug": True}, "body": "{}"}
    # When it is checked
    found = messages("REST", task_input)
    # Then each is reported at its field, saying what was expected
    assert found == {
        "action": "must be one of get, post, put, patch, delete, not 'fetch'",
        "url": (
            "must be an http:// or https:// URL, not 'ftp://files' (or a path on the task's kubernetesServer endpoint)"
        ),
        "headers.X-Debug": "must be a string or a number",
        "body": "is not an input of a REST task (expected: action, headers, idempotent, payload, url)",
    }


def test_rest_headers_must_be_an_object() -> None:
    # Given headers written as a list of lines
    # When they are checked
    # Then they are reported
    assert messages("REST", {"url": "http://a", "headers": ["Accept: */*"]}) == {
        "headers": "must be an object of header names and values"
    }


def test_values_known_only_at_run_time_are_not_checked_when_saving() -> None:
    # Given a REST input whose action, URL and headers all come from bindings
    task_input = {"action": "${input.verb}", "url": "${input.endpoint}/builds", "headers": "${input.headers}"}
    # When it is checked
    # Then nothing is reported: their types are checked by the executor when they are known
    assert check_task_input("REST", task_input) == []


# -- POLL


def test_a_poll_with_every_field_is_accepted() -> None:
    # Given a POLL input using every field
    # When it is checked
    # Then there is nothing to report
    assert check_task_input("POLL", GOOD_POLL) == []


def test_a_poll_needs_a_url_and_exit_criteria_each_reported_once() -> None:
    # Given an empty POLL input
    # When it is checked
    # Then both required fields are reported, once each
    assert check_task_input("POLL", {}) == [Problem("exitCriteria", "is required"), Problem("url", "is required")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pollCount", "ten", "must be a whole number above 0, not 'ten'"),
        ("pollCount", 2.5, "must be a whole number above 0, not 2.5"),
        ("pollCount", True, "must be a whole number above 0, not True"),
        ("pollCount", 0, "must be greater than 0, not 0"),
        ("pollCount", -3, "must be greater than 0, not -3"),
        ("pollIntervalSeconds", "5s", "must be a number of seconds above 0, not '5s'"),
        ("pollIntervalSeconds", False, "must be a number of seconds above 0, not False"),
        ("pollIntervalSeconds", 0.0, "must be greater than 0, not 0.0"),
        ("ignoreFailure", "maybe", "must be true or false, not 'maybe'"),
        ("ignoreFailure", 1, "must be true or false, not 1"),
    ],
)
def test_a_poll_reports_counts_intervals_and_flags_of_the_wrong_kind(field: str, value: object, message: str) -> None:
    # Given a POLL input with one field of the wrong kind
    task_input = GOOD_POLL | {field: value}
    # When it is checked
    # Then that field is reported
    assert messages("POLL", task_input) == {field: message}


def test_numbers_and_flags_written_as_text_are_read_as_they_are_when_bound() -> None:
    # Given a POLL whose numbers and flag are text, as bindings give them and Code Stream's exports write them
    task_input = GOOD_POLL | {"pollCount": "10", "pollIntervalSeconds": " 2.5 ", "ignoreFailure": "true"}
    # When it is checked, Then it is accepted, as the same text would be once bound
    assert check_task_input("POLL", task_input) == []


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        pytest.param(
            "responseCode == 200",
            {"exitCriteria": "must be an object with a 'success' and/or 'failure' expression"},
            id="text",
        ),
        pytest.param({}, {"exitCriteria": "needs a 'success' or a 'failure' expression"}, id="empty"),
        pytest.param({"success": ""}, {"exitCriteria": "needs a 'success' or a 'failure' expression"}, id="blank"),
        pytest.param(
            {"success": "true", "retry": "false"}, {"exitCriteria.retry": "is not 'success' or 'failure'"}, id="extra"
        ),
        pytest.param(
            {"success": "true", 404: "false"}, {"exitCriteria.404": "is not 'success' or 'failure'"}, id="number-key"
        ),
        pytest.param({"failure": 500}, {"exitCriteria.failure": "must be an expression string"}, id="not-text"),
    ],
)
def test_poll_exit_criteria_must_be_a_success_or_failure_expression(criteria: object, expected: dict[str, str]) -> None:
    # Given a POLL whose exit criteria are malformed
    task_input = GOOD_POLL | {"exitCriteria": criteria}
    # When it is checked
    # Then the criteria are reported where they are wrong
    assert messages("POLL", task_input) == expected


def test_a_poll_may_have_only_a_failure_criterion() -> None:
    # Given a POLL that waits until the response says it failed, or the polls run out
    task_input = GOOD_POLL | {"exitCriteria": {"failure": "responseCode >= 500"}}
    # When it is checked
    # Then it is accepted
    assert check_task_input("POLL", task_input) == []


# -- Condition


@pytest.mark.parametrize(
    ("task_input", "expected"),
    [
        ({}, [Problem("condition", "is required")]),
        ({"condition": None}, [Problem("condition", "is required")]),
        ({"condition": "  "}, [Problem("condition", "must be a non-empty expression")]),
        ({"condition": True}, [Problem("condition", "must be a non-empty expression")]),
    ],
)
def test_a_condition_needs_an_expression(task_input: dict[str, object], expected: list[Problem]) -> None:
    # Given a Condition without a usable expression
    # When it is checked
    # Then it is reported once
    assert check_task_input("Condition", task_input) == expected


# -- expressions the executors evaluate themselves


def test_the_expressions_of_a_task_are_found_with_their_paths() -> None:
    # Given a POLL, a Condition and a REST input
    # When their expressions are asked for
    poll = TASK_TYPES["POLL"].expressions(GOOD_POLL)
    condition = TASK_TYPES["Condition"].expressions({"condition": "${input.tag} != ''"})
    rest = TASK_TYPES["REST"].expressions({"url": "http://a", "payload": "x == 1"})
    # Then each exit criterion comes with its path, the condition with its field, and REST has none
    assert poll == {"exitCriteria.success": "responseJson.done == true", "exitCriteria.failure": "responseCode >= 500"}
    assert condition == {"condition": "${input.tag} != ''"}
    assert rest == {}


def test_only_a_poll_may_read_the_response_it_fetched() -> None:
    # Given the task types
    # When their local names are compared
    # Then POLL's expressions may read the response and a Condition's may not
    assert {"responseJson", "responseCode"} <= TASK_TYPES["POLL"].local_names == RESPONSE_NAMES
    assert TASK_TYPES["Condition"].local_names == frozenset()


@pytest.mark.parametrize(
    ("value", "bound"),
    [("${input.url}", True), ("https://x/${input.path}", True), ("https://x", False), ("${", False), (3, False)],
)
def test_a_value_is_bound_when_it_holds_a_complete_binding(value: object, bound: bool) -> None:
    # Given a value
    # When it is asked whether it is only known at run time
    # Then only text with a closed `${...}` is
    assert is_bound(value) is bound


def test_every_task_type_is_declared_once_with_where_it_runs_and_its_queue() -> None:
    # Given the declarations and the executors a worker builds from them
    executors = build_executors(HttpClient(timeout=1), lambda endpoint_id: None)  # type: ignore[arg-type,return-value]
    worker_types = {name for name, spec in TASK_TYPES.items() if spec.runs_in is Runner.WORKER}

    # Then a worker can run exactly the types declared to run in one, each on a queue workers subscribe to,
    # cluster work apart from HTTP calls, and the engine's own types never travel to a worker
    assert set(executors) == worker_types
    assert all(TASK_TYPES[name].queue in QUEUES for name in worker_types)
    assert (queue_for("K8S"), queue_for("REST"), queue_for("METRIC"), queue_for("Condition")) == (
        "kubernetes",
        "http",
        "http",
        "default",
    )
    assert queue_for("K8S", rollback=True) == "rollback"
    assert TASK_TYPES["UserOperation"].runs_in is Runner.ENGINE
    assert "UserOperation" not in worker_types and TASK_TYPES["Pipeline"].runs_in is Runner.ENGINE
