"""Pipeline notifications, through the API with a real worker: a local webhook receiver (pytest-httpserver) and a
local SMTP server (aiosmtpd) get one message per configured event; a receiver that is down changes no outcome,
and the sweep delivers once it is back. Stories run on PostgreSQL and Redis.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, update

from orchestrator.engine import Engine
from orchestrator.redaction import MASK
from orchestrator.schema import notifications, now
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.sweep import Sweeper
from workers.celery_app import make_celery
from workers.dispatcher import CeleryDispatcher

from rollway_testing import ServedApp, WorkerProcess, ended, execution, task_of, wait_until, waits

Doc = dict[str, Any]
PROJECT = "shop"
EVERY_EVENT = [
    "STARTED",
    "WAITING",
    "COMPLETED",
    "FAILED",
    "CANCELED",
    "ROLLING_BACK",
    "ROLLBACK_COMPLETED",
    "ROLLBACK_FAILED",
]
SECRET = "hunter2-the-deploy-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every mail it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by this name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def subjects(self) -> list[str]:
        return sorted(str(message["Subject"]) for message in self.messages)


@pytest.fixture
def mailbox(api: ServedApp) -> Iterator[Mailbox]:
    """A local SMTP server on a free port, and the project's smtp endpoint pointing at it."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    body = {"name": "mail", "project": PROJECT, "type": "smtp", "url": f"smtp://127.0.0.1:{port}"}
    endpoint = api.create_at("/api/endpoints", body | {"from": "rollway@example.com"})
    assert (endpoint["type"], endpoint["from"], endpoint["hasPassword"]) == ("smtp", "rollway@example.com", False)
    yield box
    controller.stop()


@pytest.fixture
def sweeper(settings: Settings) -> Iterator[Sweeper]:
    """The sweep over the API's database, run by the test when it wants a pass."""
    store = Store.connect(settings.database_url, settings.secret_key, migrate=False)
    yield Sweeper(
        Engine(store, CeleryDispatcher(make_celery(settings)), settings.sweep_seconds), settings.lease_seconds
    )
    store.dispose()


def restore_pipeline(api: ServedApp, works: bool = True) -> None:
    """The rollback pipeline: one task that passes (or fails when it does not `work`); it notifies nothing."""
    undo = {"Note": {"type": "Condition", "input": {"condition": "1 == 1" if works else "1 == 2"}}}
    document = {
        "name": "Restore",
        "project": PROJECT,
        "enabled": True,
        "stageOrder": ["Undo"],
        "stages": {"Undo": {"taskOrder": ["Note"], "tasks": undo}},
    }
    api.create(document)


def release_pipeline(api: ServedApp, notify: Doc, tasks: Doc | None = None, restores: bool = True) -> Doc:
    """Stage Prod: `Check` passes when the input tag is 'good' (else it fails, and Restore runs); `notify` is its
    `notifications`."""
    restore_pipeline(api, restores)
    tasks = tasks or {"Check": {"type": "Condition", "input": {"condition": "${input.tag} == 'good'"}}}
    stage = {"taskOrder": list(tasks), "tasks": tasks, "rollback": {"pipeline": "Restore"}}
    document = {
        "name": "Release",
        "project": PROJECT,
        "enabled": True,
        "input": {"tag": "good"},
        "stageOrder": ["Prod"],
        "stages": {"Prod": stage},
        "notifications": notify,
    }
    return api.create(document)


def run(api: ServedApp, pipeline: Doc, **given: Any) -> str:
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": given})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["executionId"])


def settled(api: ServedApp, execution_id: str, count: int) -> list[Doc]:
    """The execution's notifications once `count` of them were tried and none is waiting for its first try."""

    def check() -> list[Doc] | None:
        found: list[Doc] = execution(api, execution_id)["notifications"]
        tried = len(found) == count and all(item["success"] is not None for item in found)
        return found if tried else None

    result: list[Doc] = wait_until(check, what=f"{count} notifications to be tried")
    return result


def hook_bodies(web: HTTPServer, path: str = "/hook") -> list[Doc]:
    return [json.loads(request.get_data()) for request, _ in web.log if request.path == path]


def by_event(bodies: list[Doc]) -> dict[str, Doc]:
    return {body["event"]: body for body in bodies}


# -- stories


def test_a_release_that_completes_notifies_its_webhook_and_its_mailbox_once_per_event(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, mailbox: Mailbox
) -> None:
    # Given a release that notifies a webhook and a mailbox of every event
    web.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    notify = {
        "webhook": [{"url": web.url_for("/hook"), "event": EVERY_EVENT}],
        "email": [{"to": "ops@example.com", "event": EVERY_EVENT}],
    }
    pipeline = release_pipeline(api, notify)

    # When it runs and completes
    execution_id = run(api, pipeline)
    assert ended(api, execution_id)["status"] == "COMPLETED"

    # Then each receiver got exactly STARTED and COMPLETED, as the default JSON body with a Slack `text`
    views = settled(api, execution_id, 4)
    assert sorted((item["event"], item["type"], item["success"], item["responseCode"]) for item in views) == [
        ("COMPLETED", "email", True, 250),
        ("COMPLETED", "webhook", True, 200),
        ("STARTED", "email", True, 250),
        ("STARTED", "webhook", True, 200),
    ]
    bodies = by_event(hook_bodies(web))
    assert sorted(bodies) == ["COMPLETED", "STARTED"] and len(hook_bodies(web)) == 2
    done = bodies["COMPLETED"]
    assert done["text"] == "Release #1 COMPLETED"
    assert (done["pipeline"], done["project"], done["executionId"], done["executionIndex"]) == (
        "Release",
        PROJECT,
        execution_id,
        1,
    )
    assert done["status"] == "COMPLETED"
    assert mailbox.subjects() == ["Release #1 COMPLETED", "Release #1 STARTED"]
    assert mailbox.recipients == [["ops@example.com"], ["ops@example.com"]]
    assert str(mailbox.messages[0]["From"]) == "rollway@example.com"
    assert "executionId: " + execution_id in mailbox.messages[0].get_content()


def test_a_release_that_fails_notifies_its_rollback_naming_the_stage_task_and_reason(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, mailbox: Mailbox
) -> None:
    # Given a release that notifies a webhook and a mailbox of every event
    web.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    notify = {
        "webhook": [{"url": web.url_for("/hook"), "event": EVERY_EVENT}],
        "email": [{"to": ["ops@example.com", "dev@example.com"], "event": EVERY_EVENT}],
    }
    pipeline = release_pipeline(api, notify)

    # When a run's check fails, so its stage's rollback runs
    execution_id = run(api, pipeline, tag="bad")
    assert ended(api, execution_id)["status"] == "ROLLBACK_COMPLETED"

    # Then each receiver got STARTED, ROLLING_BACK and ROLLBACK_COMPLETED, the rollback ones naming the cause
    views = settled(api, execution_id, 6)
    assert all(item["success"] for item in views)
    assert sorted(item["event"] for item in views if item["type"] == "webhook") == [
        "ROLLBACK_COMPLETED",
        "ROLLING_BACK",
        "STARTED",
    ]
    assert len(hook_bodies(web)) == 3
    bodies = by_event(hook_bodies(web))
    cause = "task Prod.Check failed: condition \"${input.tag} == 'good'\" is false"
    for event in ("ROLLING_BACK", "ROLLBACK_COMPLETED"):
        body = bodies[event]
        assert body["text"] == f"Release #1 {event}: {cause}"
        assert (body["failedStage"], body["failedTask"]) == ("Prod", "Check")
        assert body["reason"] == "condition \"${input.tag} == 'good'\" is false"
    assert bodies["ROLLBACK_COMPLETED"]["status"] == "ROLLBACK_COMPLETED"
    assert "Restore #1 COMPLETED" in bodies["ROLLBACK_COMPLETED"]["statusMessage"]
    assert mailbox.subjects() == [
        f"Release #1 ROLLBACK_COMPLETED: {cause}",
        f"Release #1 ROLLING_BACK: {cause}",
        "Release #1 STARTED",
    ]
    assert mailbox.recipients[0] == ["ops@example.com", "dev@example.com"]


def test_a_failed_rollback_notifies_that_it_can_be_rolled_back_again_by_hand(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose rollback pipeline fails too
    web.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    notify = {"webhook": [{"url": web.url_for("/hook"), "event": ["ROLLBACK_FAILED", "ROLLBACK_COMPLETED"]}]}
    pipeline = release_pipeline(api, notify, restores=False)

    # When a run fails
    execution_id = run(api, pipeline, tag="bad")
    assert ended(api, execution_id)["status"] == "ROLLBACK_FAILED"

    # Then the one notification names the cause and says how to roll it back by hand
    settled(api, execution_id, 1)
    [body] = hook_bodies(web)
    manual = (
        f"it can be rolled back again by hand: POST /api/executions/{execution_id}/rollback "
        f"(rollway rollback {execution_id})"
    )
    assert (body["event"], body["failedTask"], body["manualRollback"]) == ("ROLLBACK_FAILED", "Check", manual)
    assert body["text"].startswith("Release #1 ROLLBACK_FAILED: task Prod.Check failed: condition")
    assert body["text"].endswith(f"({manual})")


def test_a_rejected_approval_notifies_waiting_then_the_rollback_naming_who_rejected(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose approval notifies a webhook, and its rollback too
    web.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    ask = {"approvers": ["${requestBy}"], "summary": "Ship it?", "expiration": 1, "expirationUnit": "HOURS"}
    tasks = {"Approve": {"type": "UserOperation", "input": ask}}
    notify = {"webhook": [{"url": web.url_for("/hook"), "event": ["WAITING", "ROLLING_BACK", "ROLLBACK_COMPLETED"]}]}
    pipeline = release_pipeline(api, notify, tasks)
    execution_id = run(api, pipeline)
    waits(api, execution_id)

    # When its approver rejects it
    [operation] = [item for item in api.http.get("/api/user-operations").json() if item["executionId"] == execution_id]
    answer = api.http.post(
        f"/api/user-operations/{operation['id']}", json={"action": "reject", "comments": "not today"}
    )
    assert answer.status_code == 200, answer.text

    # Then the webhook heard it wait, and roll back naming the task and who rejected it, and why
    assert ended(api, execution_id)["status"] == "ROLLBACK_COMPLETED"
    settled(api, execution_id, 3)
    bodies = by_event(hook_bodies(web))
    assert sorted(bodies) == ["ROLLBACK_COMPLETED", "ROLLING_BACK", "WAITING"]
    assert bodies["WAITING"]["text"].startswith("Release #1 WAITING: task Prod.Approve is waiting for approval")
    rolling = bodies["ROLLING_BACK"]
    assert (rolling["failedStage"], rolling["failedTask"]) == ("Prod", "Approve")
    assert "rejected by" in rolling["reason"] and "not today" in rolling["reason"]
    assert rolling["text"].startswith("Release #1 ROLLING_BACK: task Prod.Approve failed: rejected by")


def test_a_receiver_that_is_down_changes_no_outcome_and_the_sweep_delivers_once_it_is_back(
    api: ServedApp, worker: WorkerProcess, sweeper: Sweeper, settings: Settings
) -> None:
    # Given a release whose webhook receiver is down (nothing listens on its port)
    port = free_port()
    notify = {"webhook": [{"url": f"http://127.0.0.1:{port}/hook", "event": ["STARTED", "COMPLETED"]}]}
    pipeline = release_pipeline(api, notify)

    # When it runs
    execution_id = run(api, pipeline)

    # Then it completes as it would, and the view records each notification tried and failed, to be tried again
    view = ended(api, execution_id)
    assert (view["status"], task_of(view, "Prod", "Check")["status"]) == ("COMPLETED", "COMPLETED")
    views = settled(api, execution_id, 2)
    assert [(item["success"], item["attempts"], item["status"]) for item in views] == [(False, 1, "PENDING")] * 2
    assert all("failed" in item["error"] and item["nextAttemptAt"] for item in views)
    assert execution(api, execution_id)["status"] == "COMPLETED"

    # When the receiver is back, and the retry's backoff has passed
    receiver = HTTPServer(host="127.0.0.1", port=port, threaded=True)
    receiver.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    receiver.start()
    try:
        database = create_engine(settings.database_url)
        with database.begin() as conn:
            conn.execute(update(notifications).values(next_attempt_at=now() - timedelta(seconds=1)))
        database.dispose()
        report = sweeper.sweep()

        # Then the sweep's retry delivers each, once, and the view says so
        assert report.notified == 2
        wait_until(
            lambda: all(item["success"] for item in execution(api, execution_id)["notifications"]),
            what="the retries to be delivered",
        )
        retried = execution(api, execution_id)["notifications"]
        assert [(item["success"], item["attempts"], item["responseCode"]) for item in retried] == [(True, 2, 200)] * 2
        assert sorted(body["event"] for body in hook_bodies(receiver)) == ["COMPLETED", "STARTED"]
        assert sweeper.sweep().notified == 0
    finally:
        receiver.stop()


def test_a_custom_payload_is_sent_as_bound_json_with_secrets_masked(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a secret variable, and a webhook whose payload binds it, the input, the index and the event
    api.create_at("/api/variables", {"name": "deployKey", "project": PROJECT, "type": "SECRET", "value": SECRET})
    web.expect_request("/custom", method="PUT").respond_with_json({"ok": True})
    payload = {
        "release": "${input.tag}",
        "number": "${executionIndex}",
        "event": "${event}",
        "key": "${var.deployKey}",
        "note": "run by ${requestBy} with key ${var.deployKey}",
        "check": "${Prod.Check.output.result}",
    }
    hook = {
        "url": web.url_for("/custom"),
        "event": "COMPLETED",
        "action": "PUT",
        "headers": {"X-Deploy-Key": "${var.deployKey}", "X-Release": "${input.tag}"},
        "payload": payload,
    }
    tasks = {"Check": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    pipeline = release_pipeline(api, {"webhook": [hook]}, tasks)

    # When it runs with a tag that holds JSON's own characters
    tag = 'v1 "quoted", {braces}'
    execution_id = run(api, pipeline, tag=tag)
    assert ended(api, execution_id)["status"] == "COMPLETED"

    # Then the payload arrives as the configured JSON with the values bound in place, the secret masked in it
    settled(api, execution_id, 1)
    [(request, _)] = web.log
    assert request.method == "PUT"
    assert json.loads(request.get_data()) == {
        "release": tag,
        "number": 1,
        "event": "COMPLETED",
        "key": MASK,
        "note": f"run by admin with key {MASK}",
        "check": True,
    }
    assert SECRET not in request.get_data(as_text=True)
    # and the headers carry it, as a REST task's would: that is how the receiver knows the sender
    assert (request.headers["X-Deploy-Key"], request.headers["X-Release"]) == (SECRET, tag)
    assert SECRET not in json.dumps(execution(api, execution_id))


def test_bad_notifications_are_refused_when_the_pipeline_is_saved_one_detail_per_problem(api: ServedApp) -> None:
    # Given notifications with an unknown event, a bad action, an unknown binding and a mail to nobody
    notify = {
        "webhook": [{"url": "http://hooks.example/x", "event": "DONE", "action": "GET", "payload": "${nothing}"}],
        "email": [{"to": "not an address", "event": "FAILED", "endpoint": "nowhere"}],
    }
    restore_pipeline(api)
    tasks = {"Check": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    document = {
        "name": "Broken",
        "project": PROJECT,
        "stageOrder": ["Prod"],
        "stages": {"Prod": {"taskOrder": ["Check"], "tasks": tasks}},
        "notifications": notify,
    }

    # When it is saved
    answer = api.http.post("/api/pipelines", json=document)

    # Then it is refused with each problem at its path (the mail's endpoint, which does not exist yet, would only
    # keep it disabled with a warning: see test_codestream_import.py)
    assert answer.status_code == 400, answer.text
    paths = sorted(item["path"] for item in answer.json()["error"]["details"])
    assert paths == [
        "notifications.email[0].to",
        "notifications.webhook[0].action",
        "notifications.webhook[0].event",
        "notifications.webhook[0].payload",
    ]
