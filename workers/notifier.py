"""Sends one pipeline notification: load, claim, render, send (a webhook or a mail), record.

A webhook goes through the same `HttpClient` as REST tasks (egress policy, timeouts, deadline); a mail through
the project's `smtp` endpoint with smtplib, after the same egress check. Rendering happens in a short
transaction, sending outside any: a slow receiver holds a worker of the `http` queue, never a database
connection or an engine step. Whatever happens is recorded on the notification (`notices.settle`); the
execution is never touched.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from urllib.parse import urlsplit

from orchestrator import defaults, notices
from orchestrator.endpoints import SMTP, Endpoint
from orchestrator.errors import RollwayError
from orchestrator.notices import Delivery, Mail, Notice, WebhookRequest
from orchestrator.notifications import WEBHOOK
from orchestrator.redaction import Secrets, redact_message
from orchestrator.schema import now
from orchestrator.settings import DEFAULT_EGRESS_DENY, Network
from orchestrator.store import Store
from orchestrator.variables import ProjectVariables, project_values
from workers.egress import refusal
from workers.http import HttpClient

log = logging.getLogger(__name__)

SMTP_PORT = 25

Prepared = WebhookRequest | tuple[Mail, Endpoint]


class Undeliverable(RollwayError):
    """A notification cannot be sent as configured (no smtp endpoint, a url that binds to nothing)."""


def _failed(error: RollwayError, secrets: Secrets, code: int | None = None, final: bool = False) -> Delivery:
    return Delivery(False, code, redact_message(error.message, secrets), final)


class Notifier:
    """Sends notifications of the executions in one store."""

    def __init__(
        self,
        store: Store,
        http: HttpClient,
        deny: Sequence[Network] = DEFAULT_EGRESS_DENY,
        timeout: float = defaults.SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.store = store
        self.http = http
        self.deny = tuple(deny)
        self.timeout = timeout

    def send(self, notice_id: str) -> None:
        """One attempt at a notification, if it is due and nobody else has it."""
        with self.store.transaction() as tx:
            notice = notices.claim(tx.conn, notice_id, now())
        if notice is None:
            return
        self._attempt(notice)

    def _attempt(self, notice: Notice) -> None:
        """Send a claimed notification and record how it went. If the database goes away meanwhile, the claim
        runs out and the sweep sends it again."""
        secrets = Secrets()
        try:
            prepared, secrets = self._prepare(notice)
            delivery = self._deliver(prepared, secrets)
        except Undeliverable as error:
            delivery = _failed(error, secrets, final=True)
        except RollwayError as error:
            delivery = _failed(error, secrets, final=error.code == "binding_invalid")
        with self.store.transaction() as tx:
            status = notices.settle(tx.conn, notice, delivery, now())
        log.info(
            "notification %s (%s %s of execution %s) attempt %d: %s %s",
            notice.id,
            notice.type,
            notice.event,
            notice.execution_id,
            notice.attempts,
            status,
            delivery.error,
        )

    def _prepare(self, notice: Notice) -> tuple[Prepared, Secrets]:
        """What to send, bound as the execution is now, and the secrets to keep out of what is recorded."""
        with self.store.transaction() as tx:
            state = tx.state(notice.execution_id)
            execution = state.execution
            values = project_values(tx.conn, self.store.vault, execution.project)
            facts = notices.facts_of(notice, execution)
            lookup = notices.lookup_for(facts, state.scope(ProjectVariables(lambda: values)))
            config = state.pipeline.notifications
            secrets = values.secrets
            if notice.type == WEBHOOK:
                if notice.target >= len(config.webhooks):
                    raise Undeliverable("the pipeline no longer has this webhook")
                return notices.render_webhook(config.webhooks[notice.target], facts, lookup, secrets), secrets
            if notice.target >= len(config.emails):
                raise Undeliverable("the pipeline no longer has this email")
            mail = notices.render_email(config.emails[notice.target], facts, lookup, secrets)
        return (mail, self._smtp_endpoint(execution.project, mail.endpoint)), secrets

    def _smtp_endpoint(self, project: str, name: str) -> Endpoint:
        found = [item for item in self.store.list_endpoints(project) if item.type == SMTP]
        if name:
            named = [item for item in found if item.name == name]
            if not named:
                raise Undeliverable(f"project '{project}' has no smtp endpoint named '{name}'")
            return named[0]
        if len(found) != 1:
            many = f"{len(found)} smtp endpoints: name one with `endpoint`" if found else "no smtp endpoint"
            raise Undeliverable(f"project '{project}' has {many}")
        return found[0]

    def _deliver(self, prepared: Prepared, secrets: Secrets) -> Delivery:
        if isinstance(prepared, WebhookRequest):
            answer = self.http.request(prepared.method, prepared.url, prepared.headers, prepared.payload)
            if answer.ok:
                return Delivery(True, answer.status_code)
            error = f"{prepared.method} answered {answer.status_code}"
            return Delivery(False, answer.status_code, redact_message(error, secrets))
        mail, endpoint = prepared
        return send_mail(mail, endpoint, self.deny, self.timeout)


def send_mail(
    mail: Mail,
    endpoint: Endpoint,
    deny: Sequence[Network],
    timeout: float,
    connect: Callable[..., smtplib.SMTP] = smtplib.SMTP,
) -> Delivery:
    """Send a mail through an smtp endpoint (STARTTLS and login when it says so); how it went."""
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname or "", parts.port or SMTP_PORT
    where = f"smtp://{host}:{port}"
    try:
        addresses = [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except OSError as error:
        return Delivery(False, None, f"{where}: cannot resolve {host}: {error}")
    refused = refusal(host, addresses, deny)
    if refused is not None:
        return Delivery(False, None, f"{where} refused: {refused}", final=True)
    message = EmailMessage()
    message["From"] = endpoint.sender or f"rollway@{host}"
    message["To"] = ", ".join(mail.to)
    message["Subject"] = mail.subject
    message.set_content(mail.body)
    try:
        with connect(addresses[0], port, timeout=timeout) as server:
            if endpoint.starttls:
                server._host = host  # type: ignore[attr-defined]  # connected by address (egress-checked), the certificate names the host
                server.starttls(context=ssl.create_default_context())
            if endpoint.username:
                server.login(endpoint.username, endpoint.password or "")
            refused_to = server.send_message(message)
    except smtplib.SMTPResponseException as error:
        return Delivery(False, error.smtp_code, f"{where} answered {error.smtp_code}: {error.smtp_error!r}"[:500])
    except (smtplib.SMTPException, OSError) as error:
        return Delivery(False, None, f"{where} failed: {error or type(error).__name__}")
    if refused_to:
        return Delivery(False, None, f"{where} refused {', '.join(sorted(refused_to))}")
    return Delivery(True, 250)
