"""The pure parts of notifications: reading `notifications:`, which event owes what, what a notification says, how
its bindings bind (url components percent-encoded, JSON payloads keeping their shape, secrets masked), the retry
budget; and the outbox on each store backend (recorded with the event, claimed once, retried, never touching the
execution)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator import defaults, notices
from orchestrator.bindings import Scope
from orchestrator.document import load_pipeline, to_document
from orchestrator.endpoints import SMTP, endpoint_from_body
from orchestrator.engine import Engine
from orchestrator.errors import BadRequest, BindingError, PipelineInvalid
from orchestrator.notices import Delivery, NoticeStatus
from orchestrator.notifications import (
    EMAIL,
    WEBHOOK,
    Email,
    Facts,
    Webhook,
    default_body,
    event_of,
    read_notifications,
    retry_delay,
    text_line,
)
from orchestrator.outcome import Failed
from orchestrator.redaction import MASK, Secrets
from orchestrator.schema import now
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store
from workers.dispatcher import InlineDispatcher

Doc = dict[str, Any]
FAILED = Facts(
    event="ROLLBACK_FAILED",
    pipeline="Release",
    project="shop",
    execution_id="e-1",
    execution_index=4,
    status="ROLLBACK_FAILED",
    status_message="task Prod.Deploy failed: boom; rollback Undo #2 FAILED",
    stage="Prod",
    task="Deploy",
    reason="boom",
)


def facts(event: str = "COMPLETED", **changes: Any) -> Facts:
    values: dict[str, Any] = {
        "event": event,
        "pipeline": "Release",
        "project": "shop",
        "execution_id": "e-1",
        "execution_index": 3,
        "status": event,
        "status_message": "",
    }
    return Facts(**values | changes)


def scope(**given: Any) -> Scope:
    return Scope(input=given, outputs={("Prod", "Check"): {"result": True}}, execution_id="e-1", execution_index=3)


# -- reading


def test_an_event_may_be_one_name_or_a_list_and_action_defaults_to_post() -> None:
    # Given a webhook for one event and an email for two, to one address
    raw = {
        "webhook": [{"url": "https://hooks.example/x", "event": "COMPLETED"}],
        "email": [{"to": "ops@example.com", "event": ["FAILED", "ROLLBACK_FAILED"]}],
    }

    # When it is read
    found, problems = read_notifications(raw)

    # Then each owes its events only
    assert problems == []
    assert found.webhooks[0].action == "POST" and found.emails[0].to == ("ops@example.com",)
    assert found.owed("COMPLETED") == [(WEBHOOK, 0)]
    assert found.owed("ROLLBACK_FAILED") == [(EMAIL, 0)]
    assert found.owed("STARTED") == []


def test_every_bad_entry_is_a_problem_at_its_path() -> None:
    # Given entries with an unknown event, a GET, headers that are not text, an unknown field and bad addresses
    raw = {
        "webhook": [
            {"url": "ftp://x", "event": "DONE", "action": "GET", "headers": {"A": 1}, "colour": "red"},
            "not an object",
        ],
        "email": [{"event": "FAILED"}, {"to": ["a@b.c", "Bob <bob@x.y>"], "event": "FAILED", "subject": "a\nb"}],
        "sms": [],
    }

    # When it is read
    _, problems = read_notifications(raw)

    # Then each problem is named once at its own path
    assert sorted(problem.path for problem in problems) == [
        "notifications.email[0].to",
        "notifications.email[1].subject",
        "notifications.email[1].to",
        "notifications.sms",
        "notifications.webhook[0].action",
        "notifications.webhook[0].colour",
        "notifications.webhook[0].event",
        "notifications.webhook[0].headers",
        "notifications.webhook[0].url",
        "notifications.webhook[1]",
    ]


def pipeline_with(notify: Doc) -> Doc:
    tasks = {"Check": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    stages = {"Prod": {"taskOrder": ["Check"], "tasks": tasks}}
    return {"name": "Release", "input": {"tag": ""}, "stageOrder": ["Prod"], "stages": stages, "notifications": notify}


def test_a_pipeline_keeps_its_notifications_through_its_document_and_checks_their_bindings() -> None:
    # Given notifications binding the input, a task's output, the event's own names and a variable
    notify = {
        "webhook": [
            {
                "url": "https://hooks.example/${input.tag}",
                "event": ["STARTED", "COMPLETED"],
                "action": "put",
                "headers": {"X-Event": "${event}"},
                "payload": {"text": "${cause}", "ok": "${Prod.Check.output.result}"},
            }
        ],
        "email": [{"to": ["ops@example.com"], "event": "FAILED", "subject": "${pipeline} ${event}", "body": "x"}],
    }

    # When it is saved and read back from its document
    pipeline = load_pipeline(pipeline_with(notify), None)
    again = load_pipeline(to_document(pipeline), None)

    # Then nothing is lost, the action is written as the method
    assert again.notifications == pipeline.notifications
    assert again.notifications.webhooks[0].action == "PUT"

    # And a binding naming nothing is refused where it is written
    notify["webhook"][0]["payload"] = {"text": "${input.nope}", "also": "${Prod.Nope.output}"}
    with pytest.raises(PipelineInvalid) as refused:
        load_pipeline(pipeline_with(notify), None, variables=lambda _project, _name: False)
    assert sorted(problem.path for problem in refused.value.details) == [
        "notifications.webhook[0].payload.also",
        "notifications.webhook[0].payload.text",
    ]


# -- what an event tells


@pytest.mark.parametrize(
    ("previous", "status", "event"),
    [
        (None, "RUNNING", "STARTED"),
        ("QUEUED", "RUNNING", "STARTED"),
        ("WAITING", "RUNNING", None),
        (None, "QUEUED", None),
        ("RUNNING", "WAITING", "WAITING"),
        ("RUNNING", "ROLLING_BACK", "ROLLING_BACK"),
        ("ROLLING_BACK", "ROLLBACK_FAILED", "ROLLBACK_FAILED"),
        ("RUNNING", "CANCELED", "CANCELED"),
    ],
)
def test_the_event_of_a_status_change(previous: str | None, status: str, event: str | None) -> None:
    assert event_of(previous, status) == event


def test_a_failed_rollback_says_what_failed_and_that_it_can_be_rolled_back_by_hand() -> None:
    # When a failed rollback's default body is made
    body = default_body(FAILED)

    # Then its one line names the pipeline, run, event and cause, and how to roll back again
    assert body["text"] == (
        "Release #4 ROLLBACK_FAILED: task Prod.Deploy failed: boom (it can be rolled back again by hand: "
        "POST /api/executions/e-1/rollback (rollway rollback e-1))"
    )
    assert (body["failedStage"], body["failedTask"], body["reason"]) == ("Prod", "Deploy", "boom")
    assert body["manualRollback"].startswith("it can be rolled back again by hand")
    assert text_line(facts("STARTED")) == "Release #3 STARTED"
    assert "failedStage" not in default_body(facts("COMPLETED"))


# -- binding


def test_a_webhook_binds_url_components_encoded_and_a_json_payload_as_json_values() -> None:
    # Given a url with a bound path component and a payload written as JSON text
    hook = Webhook(
        url="https://hooks.example/releases/${input.tag}?by=${requestBy}",
        events=("COMPLETED",),
        payload='{"text": "${pipeline} ${input.tag}", "tag": "${input.tag}", "n": "${executionIndex}"}',
    )
    given = scope(tag='../admin?x=1#"}')

    # When it is bound
    sent = notices.render_webhook(hook, facts(), notices.lookup_for(facts(), given), Secrets())

    # Then the value fills one path component, and the payload keeps its shape with the values in place
    assert sent.url == "https://hooks.example/releases/..%2Fadmin%3Fx%3D1%23%22%7D?by="
    assert sent.payload == {"text": 'Release ../admin?x=1#"}', "tag": '../admin?x=1#"}', "n": 3}
    assert sent.method == "POST"


def test_secrets_are_masked_in_what_a_notification_says_and_kept_in_its_headers() -> None:
    # Given a secret variable bound into a payload, a header and a mail
    secret = "s3cret-token-value"
    bound = Scope(input={}, outputs={}, variables={"key": secret})
    secrets = Secrets.of([secret])
    hook = Webhook(
        "https://h.example/",
        ("COMPLETED",),
        headers={"Authorization": "Bearer ${var.key}"},
        payload={"key": "${var.key}", "note": "with ${var.key} inside"},
    )
    mail = Email(("ops@example.com",), ("COMPLETED",), subject="key ${var.key}\nBcc: evil@x.y", body="${var.key}")
    lookup = notices.lookup_for(facts(status_message=f"failed with {secret}"), bound)

    # When they are bound
    sent = notices.render_webhook(hook, facts(), lookup, secrets)
    written = notices.render_email(mail, facts(), lookup, secrets)
    default = notices.render_webhook(
        Webhook("https://h.example/", ("COMPLETED",)), facts(status_message=secret), lookup, secrets
    )

    # Then the payload, the default body and the mail carry the mask, the header the credential it is for
    assert sent.payload == {"key": MASK, "note": f"with {MASK} inside"}
    assert sent.headers == {"Authorization": f"Bearer {secret}"}
    assert default.payload["statusMessage"] == MASK  # type: ignore[index]
    assert (written.subject, written.body) == (f"key {MASK} Bcc: evil@x.y", MASK)


def test_a_header_that_binds_to_two_lines_or_a_url_that_binds_to_nothing_is_not_sent() -> None:
    lookup = notices.lookup_for(facts(), scope(tag="a\r\nX-Evil: 1"))
    with pytest.raises(BindingError, match="line break"):
        notices.render_webhook(
            Webhook("https://h.example/", (), headers={"X-Tag": "${input.tag}"}), facts(), lookup, Secrets()
        )
    with pytest.raises(BindingError, match="not an http"):
        notices.render_webhook(Webhook("${input.tag}", ()), facts(), lookup, Secrets())


def test_retries_back_off_doubling_up_to_a_cap_and_stop_after_the_budget() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, defaults.NOTIFY_MAX_ATTEMPTS + 1)]
    assert delays[0] == defaults.NOTIFY_RETRY_SECONDS and delays[1] == 2 * defaults.NOTIFY_RETRY_SECONDS
    assert all(delay is not None and delay <= defaults.NOTIFY_RETRY_MAX_SECONDS for delay in delays[:-1])
    assert delays[-1] is None


# -- smtp endpoints


def test_an_smtp_endpoint_takes_its_own_fields_and_a_kubernetes_one_does_not() -> None:
    body = {"name": "mail", "type": "smtp", "url": "smtp://mail.example:587", "username": "u", "password": "p"}
    endpoint = endpoint_from_body(body | {"from": "rollway@example.com", "starttls": True}, "id-1")
    assert (endpoint.type, endpoint.sender, endpoint.starttls, endpoint.password) == (
        SMTP,
        "rollway@example.com",
        True,
        "p",
    )
    with pytest.raises(BadRequest) as refused:
        endpoint_from_body({"name": "mail", "type": "smtp", "url": "http://mail.example", "token": "t"}, "id-2")
    assert sorted(problem.path for problem in refused.value.details) == ["token", "url"]
    with pytest.raises(BadRequest) as refused:
        endpoint_from_body({"name": "k", "url": "https://k.example", "from": "a@b.c"}, "id-3")
    assert [problem.path for problem in refused.value.details] == ["from"]


# -- the outbox, on each backend


def failing_release(store: Store, notify: Doc) -> Any:
    document = pipeline_with(notify) | {"enabled": True}
    document["stages"]["Prod"]["tasks"]["Check"]["input"]["condition"] = "1 == 2"
    return store.add_pipeline(load_pipeline(document, None))


def test_the_events_of_a_step_record_their_notifications_and_hand_them_on_after_the_commit(store: Store) -> None:
    # Given a pipeline notifying a webhook of its start and its failure
    hook = {"url": "https://hooks.example/x", "event": ["STARTED", "FAILED"]}
    record = failing_release(store, {"webhook": [hook]})
    dispatcher = InlineDispatcher(sleep=lambda _seconds: None)
    engine = Engine(store, dispatcher)

    # When it is triggered, and its check fails
    execution = engine.trigger(record, {}, "", "tester")
    [run] = store.task_runs(execution.id)
    with store.transaction() as tx:
        claimed = tx.claim_task_run(run.id, run.attempt, "w", now() + timedelta(seconds=60))
    assert claimed is not None
    engine.task_finished(claimed, Failed("it broke"))

    # Then one notification per event was written with its event and handed on, the failure naming its task
    found = store.notices(execution.id)
    assert [(notice.event, notice.type, notice.status) for notice in found] == [
        ("STARTED", WEBHOOK, NoticeStatus.PENDING),
        ("FAILED", WEBHOOK, NoticeStatus.PENDING),
    ]
    assert (found[1].stage, found[1].task, found[1].reason) == ("Prod", "Check", "it broke")
    assert dispatcher.notices == [notice.id for notice in found]
    assert store.get_execution(execution.id).status is ExecutionStatus.FAILED


def test_a_notification_is_claimed_once_retried_after_a_failure_and_given_up_after_its_budget(store: Store) -> None:
    # Given a run that owes one notification
    record = failing_release(store, {"webhook": [{"url": "https://hooks.example/x", "event": "STARTED"}]})
    execution = Engine(store, InlineDispatcher()).trigger(record, {}, "", "tester")
    [notice] = store.notices(execution.id)

    # When two workers try to take it at once, only one gets it
    with store.transaction() as tx:
        first = notices.claim(tx.conn, notice.id, now())
        second = notices.claim(tx.conn, notice.id, now())
    assert first is not None and first.attempts == 1 and second is None

    # When that attempt fails, it is due again after the backoff, and the sweep finds it only then
    with store.transaction() as tx:
        assert notices.settle(tx.conn, first, Delivery(False, 503, "down"), now()) is NoticeStatus.PENDING
        assert notices.due_to_send(tx.conn, now(), now(), 10) == []
        later = now() + timedelta(seconds=defaults.NOTIFY_RETRY_SECONDS + 1)
        assert notices.due_to_send(tx.conn, later, later, 10) == [notice.id]

    # When every attempt of its budget fails, it is given up, and the execution is as it was
    for attempt in range(2, defaults.NOTIFY_MAX_ATTEMPTS + 1):
        stamp = now() + timedelta(days=attempt)
        with store.transaction() as tx:
            taken = notices.claim(tx.conn, notice.id, stamp)
            assert taken is not None and taken.attempts == attempt
            status = notices.settle(tx.conn, taken, Delivery(False, None, "refused"), stamp)
    assert status is NoticeStatus.FAILED
    [given_up] = store.notices(execution.id)
    assert (given_up.status, given_up.attempts, given_up.error) == (
        NoticeStatus.FAILED,
        defaults.NOTIFY_MAX_ATTEMPTS,
        "refused",
    )
    assert store.get_execution(execution.id).status is execution.status


def test_an_unbindable_notification_is_given_up_at_once(store: Store) -> None:
    record = failing_release(store, {"webhook": [{"url": "https://hooks.example/x", "event": "STARTED"}]})
    execution = Engine(store, InlineDispatcher()).trigger(record, {}, "", "tester")
    [notice] = store.notices(execution.id)
    with store.transaction() as tx:
        taken = notices.claim(tx.conn, notice.id, now())
        assert taken is not None
        assert notices.settle(tx.conn, taken, Delivery(False, error="bad", final=True), now()) is NoticeStatus.FAILED
