"""Sending one notification (workers/notifier.py) against real receivers: what each answer leaves recorded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from orchestrator.document import load_pipeline
from orchestrator.endpoints import SMTP, Endpoint
from orchestrator.engine import Engine
from orchestrator.notices import Mail, Notice, NoticeStatus
from orchestrator.settings import networks
from orchestrator.store import Store
from workers.dispatcher import InlineDispatcher
from workers.http import HttpClient
from workers.notifier import Notifier, send_mail


@pytest.fixture
def http() -> Iterator[HttpClient]:
    client = HttpClient(timeout=5)
    yield client
    client.close()


def owed(store: Store, notify: dict[str, Any]) -> Notice:
    """The STARTED notification of a new run of a pipeline with these notifications."""
    tasks = {"Check": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    document = {
        "name": "Release",
        "enabled": True,
        "stageOrder": ["Prod"],
        "stages": {"Prod": {"taskOrder": ["Check"], "tasks": tasks}},
        "notifications": notify,
    }
    record = store.add_pipeline(load_pipeline(document, None))
    execution = Engine(store, InlineDispatcher()).trigger(record, {}, "", "tester")
    [notice] = store.notices(execution.id)
    return notice


def after(store: Store, notice: Notice) -> Notice:
    [found] = [item for item in store.notices(notice.execution_id) if item.id == notice.id]
    return found


def test_a_receiver_that_answers_an_error_is_tried_again_with_its_answer_recorded(
    store: Store, http: HttpClient, web: HTTPServer
) -> None:
    # Given a webhook whose receiver answers 503
    web.expect_request("/hook", method="POST").respond_with_data("busy", status=503)
    notice = owed(store, {"webhook": [{"url": web.url_for("/hook"), "event": "STARTED"}]})

    # When it is sent
    Notifier(store, http).send(notice.id)

    # Then the answer is recorded and it waits for its retry; sending it again now does nothing (not due)
    sent = after(store, notice)
    assert (sent.status, sent.attempts, sent.response_code) == (NoticeStatus.PENDING, 1, 503)
    assert sent.error == "POST answered 503"
    Notifier(store, http).send(notice.id)
    assert after(store, notice).attempts == 1 and len(web.log) == 1


def test_a_webhook_the_egress_policy_denies_is_not_sent(store: Store, web: HTTPServer) -> None:
    # Given a worker that may not reach loopback, and a webhook there
    notice = owed(store, {"webhook": [{"url": web.url_for("/hook"), "event": "STARTED"}]})
    denied = HttpClient(networks(("127.0.0.0/8",)), timeout=5)

    # When it is sent
    Notifier(store, denied).send(notice.id)

    # Then nothing reached the receiver, and the refusal is recorded
    sent = after(store, notice)
    assert web.log == [] and "refused" in sent.error and sent.status is NoticeStatus.PENDING


def test_a_mail_with_no_smtp_endpoint_is_given_up_at_once_saying_why(store: Store, http: HttpClient) -> None:
    # Given an email notification in a project without an smtp endpoint
    notice = owed(store, {"email": [{"to": "ops@example.com", "event": "STARTED"}]})

    # When it is sent
    Notifier(store, http).send(notice.id)

    # Then it failed for good, naming what is missing
    sent = after(store, notice)
    assert (sent.status, sent.attempts) == (NoticeStatus.FAILED, 1)
    assert sent.error == "project 'default' has no smtp endpoint"


def test_a_mail_logs_in_with_the_endpoints_credentials() -> None:
    # Given an SMTP server that takes one user's login only
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    delivered: list[str] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it so
            delivered.append(f"{session.auth_data.decode()} -> {','.join(envelope.rcpt_tos)}")
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        return AuthResult(success=(data.login, data.password) == (b"robot", b"pa55word"), auth_data=data.login)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        mail = Mail(("ops@example.com",), "Release #1 STARTED", "body", "")
        endpoint = Endpoint("id", "mail", "shop", SMTP, f"smtp://127.0.0.1:{port}", username="robot")

        # When it is sent with the right password, and with a wrong one
        good = send_mail(mail, replace(endpoint, password="pa55word"), (), 5)
        bad = send_mail(mail, replace(endpoint, password="guess"), (), 5)
    finally:
        controller.stop()

    # Then the first is delivered as that user, the second not delivered
    assert good.ok and delivered == ["robot -> ops@example.com"]
    assert not bad.ok and delivered == ["robot -> ops@example.com"]
    assert "guess" not in bad.error
