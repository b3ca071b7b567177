"""Approvals: a `UserOperation` task waits for one of its approvers, and never for a worker.

Code Stream's rule: the engine holds the task (WAITING) with an ACTIVE user operation naming its approvers; a
listed approver (or an admin) approves (the task completes with the answer as its output and the run goes on)
or rejects (the task fails naming who and why, so its stage rolls back); nobody answering in time expires it
(the sweep), which fails it too. Stories run against the API over HTTP on PostgreSQL and Redis with a real
worker; tokens are made through the API, and the CLI runs through click's CliRunner against the same server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from api.cli import cli
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.sweep import Sweeper
from orchestrator.useroperations import OperationStatus, approval_of, parse_status
from workers.celery_app import make_celery
from workers.dispatcher import CeleryDispatcher

from rollway_testing import (
    ServedApp,
    WorkerProcess,
    client_for,
    ended,
    execution,
    started,
    task_of,
    token_for,
    wait_until,
    waits,
)

Doc = dict[str, Any]
PROJECT = "shop"


# -- helpers


@pytest.fixture
def developer(api: ServedApp) -> Iterator[httpx.Client]:
    with client_for(api, "developer", "dev-dana") as client:
        yield client


@pytest.fixture
def executor(api: ServedApp) -> Iterator[httpx.Client]:
    """An executor the approvals below do not list."""
    with client_for(api, "executor", "exec-eli") as client:
        yield client


@pytest.fixture
def release_manager(api: ServedApp) -> Iterator[httpx.Client]:
    """An executor the approvals below list."""
    with client_for(api, "executor", "rel-rita") as client:
        yield client


@pytest.fixture
def sweeper(settings: Settings) -> Iterator[Sweeper]:
    """The sweep over the API's database, run by the test when it wants a pass."""
    store = Store.connect(settings.database_url, settings.secret_key, migrate=False)
    yield Sweeper(
        Engine(store, CeleryDispatcher(make_celery(settings)), settings.sweep_seconds), settings.lease_seconds
    )
    store.dispose()


def restore_pipeline(api: ServedApp) -> None:
    """The rollback pipeline: it records why it ran in its comments."""
    undo = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    document = {
        "name": "Restore",
        "project": PROJECT,
        "enabled": True,
        "input": {"reason": ""},
        "stageOrder": ["Undo"],
        "stages": {"Undo": {"taskOrder": ["Note"], "tasks": undo}},
    }
    api.create(document)


def release_pipeline(api: ServedApp, url: str, name: str = "Release", **approval: Any) -> Doc:
    """Stage Prod: `Approve` (a UserOperation for rel-rita and whoever ran it), then `Deploy`, a REST call to `url`
    that sends who approved; the stage's rollback is `Restore`."""
    restore_pipeline(api)
    ask = {
        "approvers": ["rel-rita", "${requestBy}"],
        "approverGroups": ["release-board"],
        "summary": "Release to production",
        "description": "Check the change window first",
        "expiration": 2,
        "expirationUnit": "HOURS",
        "sendemail": False,
    } | approval
    deploy = {"action": "get", "url": url, "headers": {"X-Approved-By": "${Prod.Approve.output.respondedBy}"}}
    stage = {
        "taskOrder": ["Approve", "Deploy"],
        "tasks": {"Approve": {"type": "UserOperation", "input": ask}, "Deploy": {"type": "REST", "input": deploy}},
        "rollback": {"pipeline": "Restore", "input": {"reason": "release refused"}},
    }
    document = {"name": name, "project": PROJECT, "enabled": True, "stageOrder": ["Prod"], "stages": {"Prod": stage}}
    return api.create(document)


def operations(client: httpx.Client, status: str) -> list[Doc]:
    answer = client.get("/api/user-operations", params={"status": status})
    assert answer.status_code == 200, answer.text
    found: list[Doc] = answer.json()
    return found


def operation_of(api: ServedApp, execution_id: str) -> Doc:
    [found] = [item for item in api.http.get("/api/user-operations").json() if item["executionId"] == execution_id]
    return found


def answer(client: httpx.Client, operation: Doc, action: str, comments: str = "") -> httpx.Response:
    return client.post(f"/api/user-operations/{operation['id']}", json={"action": action, "comments": comments})


def rollway(api: ServedApp, token: str, *args: str) -> Result:
    """`rollway --url <api> ARGS` with `token` in the environment."""
    environment = {"ROLLWAY_API_TOKEN": token, "ROLLWAY_URL": None}
    return CliRunner().invoke(cli, ["--url", api.url, *args], env=environment)


# -- stories


def test_a_listed_approver_approves_and_the_task_completes_with_the_answer_as_its_output(
    api: ServedApp,
    worker: WorkerProcess,
    web: HTTPServer,
    developer: httpx.Client,
    executor: httpx.Client,
    release_manager: httpx.Client,
) -> None:
    # Given a release pipeline whose first task asks rel-rita (or whoever ran it) to approve
    web.expect_request("/deploy").respond_with_json({"ok": True})
    pipeline = release_pipeline(api, web.url_for("/deploy"))

    # When a developer runs it
    execution_id = started(developer, pipeline)

    # Then the execution waits for the approvers, with an ACTIVE APPROVAL naming them, and nothing was deployed
    view = waits(api, execution_id)
    waiting = "waiting for approval by rel-rita, dev-dana: Release to production"
    assert view["statusMessage"] == f"task Prod.Approve is {waiting}"
    held = task_of(view, "Prod", "Approve")
    assert (held["status"], held["statusMessage"]) == ("WAITING", waiting)
    [operation] = operations(developer, "ACTIVE")
    assert (operation["kind"], operation["status"], operation["summary"]) == (
        "APPROVAL",
        "ACTIVE",
        "Release to production",
    )
    assert (operation["approvers"], operation["approverGroups"]) == (["rel-rita", "dev-dana"], ["release-board"])
    assert (operation["description"], operation["requestedBy"]) == ("Check the change window first", "dev-dana")
    assert operation["expiresAt"] is not None and operation["expiresAt"] > operation["createdAt"]
    assert operations(developer, "INACTIVE") == []
    assert web.log == []

    # When an executor the approval does not list tries to approve it
    refused = answer(executor, operation, "approve", "fine by me")

    # Then that is refused naming who may, and it still waits
    assert refused.status_code == 403, refused.text
    assert "only a listed approver ('rel-rita', 'dev-dana') or an admin" in refused.json()["error"]["message"]
    assert execution(api, execution_id)["status"] == "WAITING"

    # When rel-rita approves it
    approved = answer(release_manager, operation, "approve", "window CHG-7 is open")

    # Then the approval task completes with the answer as its output, the deploy runs knowing who approved it,
    # and the execution completes
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["respondedBy"]) == ("APPROVED", "rel-rita")
    done = ended(api, execution_id)
    assert done["status"] == "COMPLETED", done
    task = task_of(done, "Prod", "Approve")
    assert task["status"] == "COMPLETED"
    output = task["output"]
    assert {key: output[key] for key in ("status", "respondedBy", "comments")} == {
        "status": "APPROVED",
        "respondedBy": "rel-rita",
        "comments": "window CHG-7 is open",
    }
    assert output["respondedAt"]
    [(sent, _)] = web.log
    assert sent.headers["X-Approved-By"] == "rel-rita"
    assert [item["id"] for item in operations(api.http, "INACTIVE")] == [operation["id"]]
    # ... and no worker ever ran the approval task: its only attempt was never claimed
    history = api.http.get(f"/api/executions/{execution_id}/events").json()
    assert [event["status"] for event in history if event["task"] == "Approve"] == ["WAITING", "COMPLETED"]

    # When it is answered again, Then that is a conflict
    assert answer(api.http, operation, "reject").status_code == 409


def test_a_rejection_fails_the_task_and_the_rollback_names_who_rejected_it_and_why(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, developer: httpx.Client
) -> None:
    # Given a release run by a developer, waiting for its approvers
    pipeline = release_pipeline(api, web.url_for("/deploy"))
    execution_id = started(developer, pipeline)
    waits(api, execution_id)
    operation = operation_of(api, execution_id)

    # When the developer who ran it (listed as ${requestBy}) rejects it
    rejected = answer(developer, operation, "reject", "the sale starts tonight")

    # Then the task fails naming who and why, the stage rolls back, and the rollback's comments say so
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["respondedBy"]) == ("REJECTED", "dev-dana")
    done = ended(api, execution_id)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    failed = task_of(done, "Prod", "Approve")
    assert (failed["status"], failed["statusMessage"]) == ("FAILED", "rejected by dev-dana: the sale starts tonight")
    assert task_of(done, "Prod", "Deploy")["status"] == "NOT_STARTED"
    rollback = execution(api, done["rollbackExecutionId"])
    assert (rollback["pipeline"], rollback["status"]) == ("Restore", "COMPLETED")
    assert "rejected by dev-dana: the sale starts tonight" in rollback["comments"]
    assert web.log == []


def test_an_approval_nobody_answers_in_time_expires_and_the_stage_rolls_back(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, developer: httpx.Client, sweeper: Sweeper
) -> None:
    # Given a release whose approval expires after 0.02 minutes, run and waiting
    pipeline = release_pipeline(api, web.url_for("/deploy"), expiration=0.02, expirationUnit="MINUTES")
    execution_id = started(developer, pipeline)
    waits(api, execution_id)
    operation = operation_of(api, execution_id)

    # When nobody answers and sweeps pass until it has expired
    wait_until(lambda: sweeper.sweep().expired == 1, timeout=60, what="the approval to expire")

    # Then the operation is EXPIRED (no longer active), the task fails saying so, and the stage rolls back
    found = api.http.get(f"/api/user-operations/{operation['id']}").json()
    assert (found["status"], found["respondedBy"]) == ("EXPIRED", None)
    assert operations(api.http, "ACTIVE") == []
    done = ended(api, execution_id)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    failed = task_of(done, "Prod", "Approve")
    assert (failed["status"], failed["statusMessage"]) == ("FAILED", "expired after 0.02 MINUTES")
    assert "expired after 0.02 MINUTES" in execution(api, done["rollbackExecutionId"])["comments"]
    # ... and it can no longer be answered
    assert answer(api.http, operation, "approve").status_code == 409
    assert web.log == []


def test_a_waiting_approval_holds_no_worker(
    api: ServedApp, worker_factory: Any, web: HTTPServer, developer: httpx.Client
) -> None:
    # Given one worker process that runs one task at a time, and a release waiting for its approval
    worker_factory("-c", "1")
    web.expect_request("/ping").respond_with_json({"ok": True})
    release = release_pipeline(api, web.url_for("/deploy"))
    waiting_id = started(developer, release)
    waits(api, waiting_id)
    call = {"type": "REST", "input": {"action": "get", "url": web.url_for("/ping")}}
    other = {
        "name": "Ping",
        "project": PROJECT,
        "enabled": True,
        "stageOrder": ["Check"],
        "stages": {"Check": {"taskOrder": ["Ping"], "tasks": {"Ping": call}}},
    }
    ping = api.create(other)

    # When another pipeline runs meanwhile
    other_id = started(developer, ping)

    # Then the worker runs it to completion while the approval still waits
    assert ended(api, other_id)["status"] == "COMPLETED"
    assert execution(api, waiting_id)["status"] == "WAITING"
    assert [item["executionId"] for item in operations(api.http, "ACTIVE")] == [waiting_id]


def test_a_newer_execution_cancels_the_earlier_pending_approval_when_asked_to(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, developer: httpx.Client
) -> None:
    # Given a release whose approval cancels earlier pending ones, run once and waiting
    pipeline = release_pipeline(api, web.url_for("/deploy"), cancelPreviousPendingUserOp=True)
    first = started(developer, pipeline)
    waits(api, first)
    earlier = operation_of(api, first)

    # When it runs again
    second = started(developer, pipeline)
    waits(api, second)

    # Then the first run's approval is canceled and its task fails, so its stage rolls back; the second waits
    found = api.http.get(f"/api/user-operations/{earlier['id']}").json()
    assert found["status"] == "CANCELED"
    done = ended(api, first)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    message = task_of(done, "Prod", "Approve")["statusMessage"]
    assert message == "canceled: execution #2 of the pipeline asked for the same approval"
    assert [item["executionId"] for item in operations(api.http, "ACTIVE")] == [second]


def test_the_cli_approves_and_rejects_by_a_unique_start_of_the_id(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, developer: httpx.Client
) -> None:
    # Given two releases waiting for rel-rita, who has a token for the command line
    web.expect_request("/deploy").respond_with_json({"ok": True})
    pipeline = release_pipeline(api, web.url_for("/deploy"))
    token = token_for(api, "executor", "rel-rita")
    approving, rejecting = started(developer, pipeline), started(developer, pipeline)
    for execution_id in (approving, rejecting):
        waits(api, execution_id)
    to_approve, to_reject = operation_of(api, approving), operation_of(api, rejecting)
    # The shortest start of each id that the other does not share.
    length = next(n for n in range(1, 37) if to_approve["id"][:n] != to_reject["id"][:n])

    # When she approves one and rejects the other by the start of their ids
    approved = rollway(api, token, "approve", to_approve["id"][:length], "--comments", "go")
    rejected = rollway(api, token, "reject", to_reject["id"][:length], "--comments", "not this one")

    # Then each is answered as asked: one completes, the other rolls back naming her and why
    assert approved.exit_code == 0, approved.output
    assert f"user operation {to_approve['id']}" in approved.output and "APPROVED by rel-rita" in approved.output
    assert rejected.exit_code == 0, rejected.output
    assert "REJECTED by rel-rita" in rejected.output
    assert ended(api, approving)["status"] == "COMPLETED"
    done = ended(api, rejecting)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    assert "rejected by rel-rita: not this one" in execution(api, done["rollbackExecutionId"])["comments"]

    # When an id matches nothing, or one already answered is answered again, Then each is one line, exit 1
    unknown = rollway(api, token, "approve", "zzzz")
    assert (unknown.exit_code, unknown.output.strip()) == (
        1,
        "Error: there is no user operation whose id starts with 'zzzz'",
    )
    again = rollway(api, token, "reject", to_approve["id"])
    assert again.exit_code == 1 and "HTTP 409" in again.output, again.output


def test_a_user_operation_task_with_bad_input_is_refused_when_saved_naming_each_problem(api: ServedApp) -> None:
    # Given a UserOperation task with no approvers, an unknown unit, a negative expiration and a flag as text
    ask = {"approvers": [], "expiration": -1, "expirationUnit": "WEEKS", "sendemail": "perhaps", "color": "red"}
    stage = {"taskOrder": ["Approve"], "tasks": {"Approve": {"type": "UserOperation", "input": ask}}}
    document = {"name": "Bad", "project": PROJECT, "enabled": True, "stageOrder": ["Prod"], "stages": {"Prod": stage}}

    # When it is saved
    refused = api.http.post("/api/pipelines", json=document)

    # Then that is a 400 naming each problem, and nothing is saved
    assert refused.status_code == 400, refused.text
    prefix = "stages.Prod.tasks.Approve.input."
    found = {item["path"].removeprefix(prefix): item["message"] for item in refused.json()["error"]["details"]}
    assert set(found) == {"approvers", "expiration", "expirationUnit", "sendemail", "color"}, found
    assert "at least one approver" in found["approvers"]
    assert "MINUTES, HOURS, DAYS" in found["expirationUnit"]
    assert api.http.get("/api/pipelines").json() == []


# -- the pure decisions


def test_an_approval_reads_its_expiration_in_code_streams_forms_and_lists_who_may_answer() -> None:
    # Given bound UserOperation inputs: minutes, the older expirationInDays, nothing, and a unit in lower case
    minutes = approval_of({"approvers": ["rel-rita", "rel-rita"], "expiration": "0.5", "expirationUnit": "minutes"})
    days = approval_of({"approvers": "ops-olga", "expirationInDays": 2})
    default = approval_of({"approverGroups": ["release-board"]})

    # Then each lasts as long as it says (three days when it says nothing), approvers once each
    assert (minutes.lasts, minutes.expired_message, minutes.approvers) == (
        timedelta(seconds=30),
        "expired after 0.5 MINUTES",
        ("rel-rita",),
    )
    assert (days.lasts, days.expired_message, days.approvers) == (
        timedelta(days=2),
        "expired after 2 DAYS",
        ("ops-olga",),
    )
    assert (default.lasts, default.waiting) == (timedelta(days=3), "waiting for approval by release-board")

    # And a binding that leaves nobody to approve, or a bad unit, is refused naming the field
    with pytest.raises(ValueError, match="approvers is empty"):
        approval_of({"approvers": ["", " "]})
    with pytest.raises(ValueError, match="expirationUnit"):
        approval_of({"approvers": ["a"], "expirationUnit": "WEEKS"})


def test_inactive_lists_every_answered_expired_or_canceled_operation() -> None:
    assert parse_status("inactive") == frozenset(OperationStatus) - {OperationStatus.ACTIVE}
    assert parse_status("ACTIVE") == {OperationStatus.ACTIVE}
    assert parse_status("") is None
