"""Pause and resume: a PAUSED execution starts nothing new and runs none of its queued attempts; the tasks it was
running finish and are recorded (a failure still rolls it back); resumed, it goes on where it stood.

Stories run against the API over HTTP on PostgreSQL and Redis with a real worker; the CLI runs through click's
CliRunner against the same server.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from api.cli import cli

from rollway_testing import TOKEN, ServedApp, WorkerProcess, ended, execution, started, task_of, wait_until

Doc = dict[str, Any]
PROJECT = "shop"


def release(api: ServedApp, web: HTTPServer, *, rollback: bool = False, interval: float = 1) -> Doc:
    """Stage Release: `Wait`, a POLL of /ready every `interval` seconds until it answers ready, then `Deploy`, a
    GET of /deploy; with `rollback`, the stage's rollback is `Restore`."""
    wait = {
        "url": web.url_for("/ready"),
        "pollCount": 100,
        "pollIntervalSeconds": interval,
        "exitCriteria": {"success": "${responseJson.ready} == true"},
        # An answer other than 2xx fails the task rather than being polled again.
        "ignoreFailure": False,
    }
    stage: Doc = {
        "taskOrder": ["Wait", "Deploy"],
        "tasks": {
            "Wait": {"type": "POLL", "input": wait},
            "Deploy": {"type": "REST", "input": {"action": "get", "url": web.url_for("/deploy")}},
        },
    }
    if rollback:
        note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
        restore = {"name": "Restore", "project": PROJECT, "enabled": True, "stageOrder": ["Undo"]}
        api.create(restore | {"stages": {"Undo": {"taskOrder": ["Note"], "tasks": note}}})
        stage["rollback"] = {"pipeline": "Restore"}
    document = {"name": "Release", "project": PROJECT, "enabled": True, "stageOrder": ["Release"]}
    return api.create(document | {"stages": {"Release": stage}})


class HeldAnswer:
    """A /ready that, once asked, answers only when the test lets it (the POLL is RUNNING meanwhile): ready, or
    not ready with an error `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.asked = threading.Event()
        self.answer = threading.Event()

    def __call__(self, request: Request) -> Response:
        self.asked.set()
        self.answer.wait(timeout=60)
        body = '{"ready": true}' if self.status == 200 else '{"ready": false}'
        return Response(body, status=self.status, content_type="application/json")


def control(api: ServedApp, execution_id: str, verb: str) -> Any:
    return api.http.post(f"/api/executions/{execution_id}/{verb}")


def rollway(api: ServedApp, *args: str) -> Result:
    """`rollway --url <api> ARGS` with the admin token in the environment."""
    return CliRunner().invoke(cli, ["--url", api.url, *args], env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None})


def requests_to(web: HTTPServer, path: str) -> int:
    return sum(1 for request, _ in web.log if request.path == path)


def test_a_paused_execution_lets_its_running_task_finish_then_starts_nothing_until_resumed_from_the_cli(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose POLL is running, its request held by the server
    held = HeldAnswer()
    web.expect_request("/ready").respond_with_handler(held)
    web.expect_request("/deploy").respond_with_json({"ok": True})
    execution_id = started(api.http, release(api, web))
    assert held.asked.wait(timeout=60)

    # When it is paused from the command line by the start of its id, and the server then answers
    paused = rollway(api, "pause", execution_id[:8])
    held.answer.set()

    # Then it is PAUSED, the running POLL finishes and is recorded, and the next task does not start
    assert paused.exit_code == 0, paused.output
    assert f"{execution_id} PAUSED paused by admin" in paused.output
    view = wait_until(
        lambda: (
            (found := execution(api, execution_id))
            and task_of(found, "Release", "Wait")["status"] == "COMPLETED"
            and found
        ),
        what="the running POLL to finish",
    )
    assert view["status"] == "PAUSED"
    assert task_of(view, "Release", "Deploy")["status"] == "NOT_STARTED"
    assert requests_to(web, "/deploy") == 0

    # When it is resumed, also by the start of its id
    resumed = rollway(api, "resume", execution_id[:8])

    # Then the next task runs and the execution completes
    assert resumed.exit_code == 0, resumed.output
    assert f"{execution_id} RUNNING resumed by admin" in resumed.output
    done = ended(api, execution_id)
    assert done["status"] == "COMPLETED", done
    assert requests_to(web, "/deploy") == 1
    history = api.http.get(f"/api/executions/{execution_id}/events").json()
    statuses = [event["status"] for event in history if event["task"] is None]
    assert statuses == ["RUNNING", "PAUSED", "RUNNING", "COMPLETED"]


def test_a_queued_attempt_is_not_run_while_paused_and_runs_once_resumed(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose POLL was answered "not yet" once and waits for its next attempt
    ready = {"ready": False}
    web.expect_request("/ready").respond_with_handler(
        lambda request: Response(f'{{"ready": {str(ready["ready"]).lower()}}}', content_type="application/json")
    )
    web.expect_request("/deploy").respond_with_json({"ok": True})
    # (three seconds between polls: time enough to pause it before its next attempt's message is delivered)
    execution_id = started(api.http, release(api, web, interval=3))
    wait_until(
        lambda: task_of(execution(api, execution_id), "Release", "Wait")["attempt"] == 2,
        what="the POLL's second attempt to be queued",
    )
    # (a running execution cannot be resumed)
    refused = control(api, execution_id, "resume")
    assert refused.status_code == 409, refused.text
    assert "only a PAUSED execution can be resumed" in refused.json()["error"]["message"]

    # When it is paused, and its queued attempt's message reaches the worker
    paused = control(api, execution_id, "pause")
    assert paused.status_code == 202, paused.text
    wait_until(lambda: "not run: not queued for this attempt, or paused" in worker.log(), what="the message to arrive")

    # Then the attempt did not run: nothing more was polled, and it is still QUEUED (not canceled)
    polls = requests_to(web, "/ready")
    view = execution(api, execution_id)
    assert view["status"] == "PAUSED"
    assert task_of(view, "Release", "Wait")["status"] == "QUEUED"

    # When the server turns ready and the execution is resumed
    ready["ready"] = True
    resumed = control(api, execution_id, "resume")

    # Then the held attempt runs, sees it ready, and the release completes
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["status"] == "RUNNING"
    done = ended(api, execution_id)
    assert done["status"] == "COMPLETED", done
    assert requests_to(web, "/ready") == polls + 1
    assert requests_to(web, "/deploy") == 1


def test_a_task_failing_while_its_execution_is_paused_still_rolls_it_back(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose POLL is running, its request held by a server that will answer 500
    held = HeldAnswer(status=500)
    web.expect_request("/ready").respond_with_handler(held)
    execution_id = started(api.http, release(api, web, rollback=True))
    assert held.asked.wait(timeout=60)

    # When it is paused and the POLL then fails
    assert control(api, execution_id, "pause").status_code == 202
    held.answer.set()

    # Then the failure is recorded and the stage's rollback runs all the same
    done = ended(api, execution_id)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    assert task_of(done, "Release", "Wait")["status"] == "FAILED"
    assert task_of(done, "Release", "Deploy")["status"] == "NOT_STARTED"
    assert execution(api, done["rollbackExecutionId"])["status"] == "COMPLETED"
    assert requests_to(web, "/deploy") == 0


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_an_ended_execution_cannot_be_paused_or_resumed(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, verb: str
) -> None:
    # Given a release that completed
    web.expect_request("/ready").respond_with_json({"ready": True})
    web.expect_request("/deploy").respond_with_json({"ok": True})
    execution_id = started(api.http, release(api, web))
    assert ended(api, execution_id)["status"] == "COMPLETED"

    # When it is paused or resumed, through the API and from the command line
    answer = control(api, execution_id, verb)
    line = rollway(api, verb, execution_id)

    # Then both are refused as a conflict, and it stays COMPLETED
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "invalid_transition"
    assert line.exit_code == 1 and "HTTP 409" in line.output, line.output
    assert execution(api, execution_id)["status"] == "COMPLETED"


def test_the_cli_cancels_by_a_unique_start_of_the_id_and_says_when_none_matches(
    api: ServedApp, web: HTTPServer
) -> None:
    # Given two executions of a release that no worker has picked up yet
    document = release(api, web)
    first, second = started(api.http, document), started(api.http, document)
    # The shortest start of the first id that the second does not share.
    length = next(n for n in range(1, 37) if first[:n] != second[:n])

    # When the first is canceled by that start of its id
    canceled = rollway(api, "cancel", first[:length])

    # Then it alone is CANCELED
    assert canceled.exit_code == 0, canceled.output
    assert f"{first} CANCELED canceled by admin" in canceled.output
    assert (execution(api, first)["status"], execution(api, second)["status"]) == ("CANCELED", "RUNNING")

    # When a start matches no id, Then that is one line, exit 1
    unknown = rollway(api, "pause", "zzzz")
    assert (unknown.exit_code, unknown.output.strip()) == (
        1,
        "Error: there is no execution whose id starts with 'zzzz'",
    )
