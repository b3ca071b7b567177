"""Pipeline notifications in Code Stream's shape: which message an execution's event owes, and how it reads.

A pipeline's `notifications: {webhook: [{url, event, action, headers, payload}], email: [{to, event, subject,
body, endpoint}]}` is read and checked here when the pipeline is saved (every problem at its path), and decides
which notifications an execution event owes (`Notifications.owed`). What a notification says by default is here
too: one Slack-compatible `text` line and the structured facts of the event (`default_body`). All of it is pure;
the outbox of owed notifications is `notices.py`, sending is `workers/notifier.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator import defaults
from orchestrator.errors import Problem

# Code Stream's notification events, each named after the execution status it reports (STARTED: first RUNNING).
EVENTS = (
    "STARTED",
    "WAITING",
    "COMPLETED",
    "FAILED",
    "CANCELED",
    "ROLLING_BACK",
    "ROLLBACK_COMPLETED",
    "ROLLBACK_FAILED",
)
ROLLBACK_EVENTS = frozenset({"ROLLING_BACK", "ROLLBACK_COMPLETED", "ROLLBACK_FAILED"})
# Events that report a failure: they name the failed stage, task and reason when a task failed.
FAILURE_EVENTS = ROLLBACK_EVENTS | {"FAILED"}
# The statuses an execution starts from: reaching RUNNING from one of them is STARTED (not a resume or an answer).
NOT_YET_RUNNING = (None, "NOT_STARTED", "QUEUED")
WEBHOOK = "webhook"
EMAIL = "email"
ACTIONS = ("POST", "PUT")
WEBHOOK_FIELDS = frozenset({"url", "event", "action", "headers", "payload"})
EMAIL_FIELDS = frozenset({"to", "event", "subject", "body", "endpoint"})
# Names only a notification's bindings know, besides an execution's (input, task outputs, var, executionId, ...).
NOTICE_NAMES = frozenset(
    {"event", "cause", "pipeline", "project", "status", "statusMessage", "stage", "task", "reason", "executionLink"}
)
MAX_PER_KIND = 20
# A plain mailbox: no display name, no line breaks, one @ (what an SMTP RCPT TO takes as is).
_ADDRESS = re.compile(r"^[^\s@<>,;\"]+@[^\s@<>,;\"]+$")


@dataclass(frozen=True)
class Webhook:
    """An HTTP request to send for some events; `payload` None sends the default JSON body."""

    url: str
    events: tuple[str, ...]
    action: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    payload: Any = None


@dataclass(frozen=True)
class Email:
    """A mail to send for some events through an `smtp` endpoint (`endpoint`, else the project's only one)."""

    to: tuple[str, ...]
    events: tuple[str, ...]
    subject: str = ""
    body: str = ""
    endpoint: str = ""


@dataclass(frozen=True)
class Notifications:
    """A pipeline's configured notifications."""

    webhooks: tuple[Webhook, ...] = ()
    emails: tuple[Email, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.webhooks or self.emails)

    def owed(self, event: str) -> list[tuple[str, int]]:
        """The notifications an event owes, as (type, position in that type's list)."""
        owed = [(WEBHOOK, position) for position, hook in enumerate(self.webhooks) if event in hook.events]
        return owed + [(EMAIL, position) for position, mail in enumerate(self.emails) if event in mail.events]

    def bound_texts(self) -> list[tuple[str, str]]:
        """Every text that may hold bindings, with its path in the document."""
        texts: list[tuple[str, str]] = []
        for position, hook in enumerate(self.webhooks):
            path = f"notifications.webhook[{position}]"
            texts += [(f"{path}.url", hook.url)]
            texts += [(f"{path}.headers.{name}", value) for name, value in hook.headers.items()]
            texts += _strings(hook.payload, f"{path}.payload")
        for position, mail in enumerate(self.emails):
            path = f"notifications.email[{position}]"
            texts += [(f"{path}.subject", mail.subject), (f"{path}.body", mail.body)]
        return texts

    def document(self) -> dict[str, Any]:
        """The notifications as a pipeline document writes them."""
        document: dict[str, Any] = {}
        if self.webhooks:
            document[WEBHOOK] = [_webhook_document(hook) for hook in self.webhooks]
        if self.emails:
            document[EMAIL] = [_email_document(mail) for mail in self.emails]
        return document


def _webhook_document(hook: Webhook) -> dict[str, Any]:
    document: dict[str, Any] = {"url": hook.url, "event": list(hook.events), "action": hook.action}
    if hook.headers:
        document["headers"] = dict(hook.headers)
    if hook.payload is not None:
        document["payload"] = hook.payload
    return document


def _email_document(mail: Email) -> dict[str, Any]:
    document: dict[str, Any] = {"to": list(mail.to), "event": list(mail.events)}
    for name, value in (("subject", mail.subject), ("body", mail.body), ("endpoint", mail.endpoint)):
        if value:
            document[name] = value
    return document


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in _strings(item, f"{path}.{key}")]
    if isinstance(value, list | tuple):
        return [found for index, item in enumerate(value) for found in _strings(item, f"{path}[{index}]")]
    return []


# -- reading a document's `notifications`


class _Reader:
    """Reads `notifications`, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def entries(self, raw: object, path: str) -> list[Mapping[str, Any]]:
        if raw is None:
            return []
        items = raw if isinstance(raw, list) else [raw]
        if len(items) > MAX_PER_KIND:
            self.problem(path, f"may list at most {MAX_PER_KIND} notifications, not {len(items)}")
            return []
        entries: list[Mapping[str, Any]] = []
        for position, item in enumerate(items):
            if not isinstance(item, Mapping) or not all(isinstance(key, str) for key in item):
                self.problem(f"{path}[{position}]", "must be an object with string keys")
                continue
            entries.append(item)
        return entries

    def fields(self, entry: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for name in sorted(set(entry) - allowed):
            self.problem(f"{path}.{name}", f"is not a known field (expected one of: {', '.join(sorted(allowed))})")

    def events(self, raw: object, path: str) -> tuple[str, ...]:
        given = raw if isinstance(raw, list) else [raw]
        if raw is None or not given:
            self.problem(path, f"is required: one of {', '.join(EVENTS)}, or a list of them")
            return ()
        unknown = [item for item in given if item not in EVENTS]
        if unknown:
            self.problem(path, f"must be one of {', '.join(EVENTS)} (or a list of them), not {unknown[0]!r}")
        return tuple(dict.fromkeys(item for item in given if item in EVENTS))

    def text(self, raw: object, path: str, required: bool = False) -> str:
        if raw is None and not required:
            return ""
        if not isinstance(raw, str) or (required and not raw.strip()):
            self.problem(path, "is required" if raw is None else "must be a non-empty string")
            return ""
        return raw

    def webhook(self, entry: Mapping[str, Any], path: str) -> Webhook:
        self.fields(entry, WEBHOOK_FIELDS, path)
        url = self.text(entry.get("url"), f"{path}.url", required=True)
        if url and not url.lower().startswith(("http://", "https://", "${")):
            self.problem(f"{path}.url", f"must be an http:// or https:// URL, not {url!r}")
        action = entry.get("action", "POST")
        if not isinstance(action, str) or action.upper() not in ACTIONS:
            self.problem(f"{path}.action", f"must be one of {', '.join(ACTIONS)}, not {action!r}")
            action = "POST"
        headers = entry.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
        ):
            self.problem(f"{path}.headers", "must be an object of header names and string values")
            headers = {}
        for name, value in headers.items():
            if any(mark in f"{name}{value}" for mark in "\r\n"):
                self.problem(f"{path}.headers.{name}", "must not hold a line break")
        return Webhook(
            url, self.events(entry.get("event"), f"{path}.event"), action.upper(), dict(headers), entry.get("payload")
        )

    def email(self, entry: Mapping[str, Any], path: str) -> Email:
        self.fields(entry, EMAIL_FIELDS, path)
        raw = entry.get("to")
        to = raw if isinstance(raw, list) else [raw]
        if raw is None or not to:
            self.problem(f"{path}.to", "is required: an address or a list of them")
            to = []
        bad = [item for item in to if not isinstance(item, str) or _ADDRESS.match(item) is None]
        if bad:
            self.problem(f"{path}.to", f"must be mail addresses such as ops@example.com, not {bad[0]!r}")
        subject = self.text(entry.get("subject"), f"{path}.subject")
        if any(mark in subject for mark in "\r\n"):
            self.problem(f"{path}.subject", "must be one line")
        return Email(
            to=tuple(str(item) for item in to if item not in bad),
            events=self.events(entry.get("event"), f"{path}.event"),
            subject=subject,
            body=self.text(entry.get("body"), f"{path}.body"),
            endpoint=self.text(entry.get("endpoint"), f"{path}.endpoint"),
        )


def read_notifications(raw: object) -> tuple[Notifications, list[Problem]]:
    """A document's `notifications` and every problem found in it (a path per problem)."""
    reader = _Reader()
    if raw is None:
        return Notifications(), []
    if not isinstance(raw, Mapping):
        return Notifications(), [Problem("notifications", "must be an object with `webhook` and `email` lists")]
    # Code Stream exports also carry `jira` notifications, which Rollway does not send.
    reader.fields(
        {name: item for name, item in raw.items() if name != "jira"}, frozenset({WEBHOOK, EMAIL}), "notifications"
    )
    hooks = [
        reader.webhook(entry, f"notifications.webhook[{position}]")
        for position, entry in enumerate(reader.entries(raw.get(WEBHOOK), "notifications.webhook"))
    ]
    mails = [
        reader.email(entry, f"notifications.email[{position}]")
        for position, entry in enumerate(reader.entries(raw.get(EMAIL), "notifications.email"))
    ]
    return Notifications(tuple(hooks), tuple(mails)), reader.problems


# -- what an event tells


def event_of(previous: str | None, status: str) -> str | None:
    """The notification event of an execution moving from `previous` to `status`; None when it notifies nothing."""
    if status == "RUNNING":
        return "STARTED" if previous in NOT_YET_RUNNING else None
    return status if status in EVENTS and status != "STARTED" else None


@dataclass(frozen=True)
class Facts:
    """What a notification tells of its event: the execution, and for a failure the task that failed and why."""

    event: str
    pipeline: str
    project: str
    execution_id: str
    execution_index: int
    status: str
    status_message: str
    stage: str = ""
    task: str = ""
    reason: str = ""

    @property
    def cause(self) -> str:
        """Why the execution is where it is: the failed task and its reason, else its status message."""
        if self.stage and self.event in FAILURE_EVENTS:
            return f"task {self.stage}.{self.task} failed: {self.reason}"
        return self.status_message

    @property
    def link(self) -> str:
        return f"/api/executions/{self.execution_id}"

    @property
    def manual_rollback(self) -> str:
        return (
            f"it can be rolled back again by hand: POST /api/executions/{self.execution_id}/rollback "
            f"(rollway rollback {self.execution_id})"
        )

    def names(self) -> dict[str, object]:
        """What the notification-only binding names give (`${event}`, `${cause}`, ...)."""
        return {
            "event": self.event,
            "cause": self.cause,
            "pipeline": self.pipeline,
            "project": self.project,
            "status": self.status,
            "statusMessage": self.status_message,
            "stage": self.stage,
            "task": self.task,
            "reason": self.reason,
            "executionLink": self.link,
        }


def text_line(facts: Facts) -> str:
    """One readable line: pipeline, #index, event and the cause (Slack's `text`, a mail's subject)."""
    line = f"{facts.pipeline} #{facts.execution_index} {facts.event}"
    if facts.cause:
        line += f": {facts.cause}"
    if facts.event == "ROLLBACK_FAILED":
        line += f" ({facts.manual_rollback})"
    return " ".join(line.split())


def default_body(facts: Facts) -> dict[str, Any]:
    """The JSON a notification sends when its pipeline gives no payload: Slack's `text` and the structured facts."""
    body: dict[str, Any] = {
        "text": text_line(facts),
        "event": facts.event,
        "pipeline": facts.pipeline,
        "project": facts.project,
        "executionId": facts.execution_id,
        "executionIndex": facts.execution_index,
        "executionLink": facts.link,
        "status": facts.status,
        "statusMessage": facts.status_message,
    }
    if facts.event in FAILURE_EVENTS:
        body |= {"failedStage": facts.stage, "failedTask": facts.task, "reason": facts.reason or facts.status_message}
    if facts.event == "ROLLBACK_FAILED":
        body["manualRollback"] = facts.manual_rollback
    return body


def default_mail_body(facts: Facts) -> str:
    """A mail's text when its pipeline gives no body: the line, then each fact on its own line."""
    lines = [text_line(facts), ""]
    lines += [f"{name}: {value}" for name, value in default_body(facts).items() if name != "text" and value != ""]
    return "\n".join(lines) + "\n"


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next try after `attempts` failed ones (doubling, capped); None once the budget is spent."""
    if attempts >= defaults.NOTIFY_MAX_ATTEMPTS:
        return None
    return float(min(defaults.NOTIFY_RETRY_SECONDS * 2 ** max(0, attempts - 1), defaults.NOTIFY_RETRY_MAX_SECONDS))
