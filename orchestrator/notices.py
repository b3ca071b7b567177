"""The notifications outbox: one row per notification an execution's event owes, and what became of it.

Rows are written in the transaction that writes the event (`record`), so a committed event always has its
notifications and a step rolled back sends none. After the commit the store hands the new rows' ids on (the
engine's dispatcher sends one `rollway.notify` message each), the sweep hands on again the rows that are due and
no worker took (`due_to_send`), and a worker `claim`s a row before it sends it, so a row handed on twice is sent
once. `settle` records the answer: SENT, PENDING again after a backoff, or FAILED once its attempts are spent.
Nothing here ever changes an execution: a notification that fails is only a notification that failed.

What a notification says is decided here too (`render_webhook`, `render_email`), when it is sent: bindings see
the execution as it is then, plus the event's own names (`${event}`, `${cause}`, ...). Secrets are masked in
what a notification tells (payload, subject, body); a url and headers may carry a SECRET variable, as a REST
task's do, because that is how a receiver knows the sender (a Slack webhook URL, an Authorization header).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from orchestrator import defaults
from orchestrator.bindings import Scope, as_text, resolve
from orchestrator.errors import BindingError
from orchestrator.execution import Execution
from orchestrator.notifications import (
    FAILURE_EVENTS,
    NOTICE_NAMES,
    Email,
    Facts,
    Webhook,
    default_body,
    default_mail_body,
    event_of,
    retry_delay,
    text_line,
)
from orchestrator.pipeline import Pipeline
from orchestrator.redaction import Secrets, mask_secrets
from orchestrator.schema import executions, notifications, task_runs
from orchestrator.snapshots import DocumentCache
from orchestrator.structured import bind_headers, bind_url

Lookup = Callable[[str], object]


class NoticeStatus(StrEnum):
    """Where a notification stands: waiting to be sent (again), sent, or given up."""

    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Notice:
    """One owed notification, as its row records it."""

    id: str
    execution_id: str
    event: str
    type: str
    target: int
    message: str
    stage: str
    task: str
    reason: str
    status: NoticeStatus
    attempts: int
    response_code: int | None
    error: str
    next_attempt_at: datetime
    sent_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


def _notice(row: Row[Any]) -> Notice:
    values = dict(row._mapping)
    return Notice(**values | {"status": NoticeStatus(values["status"])})


# -- in the transaction of an event


def record(
    conn: Connection,
    documents: DocumentCache,
    execution_id: str,
    *,
    previous: str | None,
    status: str,
    message: str,
    stamp: datetime,
) -> list[str]:
    """Write the notifications an execution's move from `previous` to `status` owes; their ids (often none).

    Each is due at once and counted as handed on now: the store's follow-up sends it after the commit, and the
    sweep sends it again if no worker took it within a lease.
    """
    event = event_of(previous, status)
    if event is None:
        return []
    found = conn.execute(select(executions.c.document_hash).where(executions.c.id == execution_id)).first()
    if found is None:
        return []
    pipeline = documents.pipeline(found.document_hash, lambda: _document(conn, execution_id))
    owed = pipeline.notifications.owed(event)
    if not owed:
        return []
    stage, task, reason = _failed_task(conn, execution_id, pipeline) if event in FAILURE_EVENTS else ("", "", "")
    rows = [
        {
            "id": str(uuid.uuid4()),
            "execution_id": execution_id,
            "event": event,
            "type": kind,
            "target": target,
            "message": message,
            "stage": stage,
            "task": task,
            "reason": reason,
            "status": NoticeStatus.PENDING.value,
            "attempts": 0,
            "response_code": None,
            "error": "",
            "next_attempt_at": stamp,
            "sent_at": stamp,
            "created_at": stamp,
            "finished_at": None,
        }
        for kind, target in owed
    ]
    conn.execute(insert(notifications), rows)
    return [str(row["id"]) for row in rows]


def _document(conn: Connection, execution_id: str) -> object:
    return conn.execute(select(executions.c.document).where(executions.c.id == execution_id)).scalar_one()


def _failed_task(conn: Connection, execution_id: str, pipeline: Pipeline) -> tuple[str, str, str]:
    """The first task of the execution that failed and was not to be ignored: (stage, task, its message)."""
    rows = conn.execute(
        select(task_runs.c.stage, task_runs.c.name, task_runs.c.status_message)
        .where(task_runs.c.execution_id == execution_id, task_runs.c.status == "FAILED")
        .order_by(task_runs.c.finished_at, task_runs.c.position)
    )
    for row in rows:
        task = pipeline.stages.get(row.stage, None)
        if task is not None and row.name in task.tasks and not task.tasks[row.name].ignore_failure:
            return row.stage, row.name, row.status_message
    return "", "", ""


# -- sending


def claim(conn: Connection, notice_id: str, stamp: datetime) -> Notice | None:
    """Take a due PENDING notification for one attempt; None if it is not there to take (sent, taken, not due).

    The attempt counts at once, and the row is due again only after a claim's time: a worker that dies sending
    leaves it to the sweep, never to a second sender at the same moment.
    """
    row = conn.execute(
        update(notifications)
        .where(
            notifications.c.id == notice_id,
            notifications.c.status == NoticeStatus.PENDING.value,
            notifications.c.next_attempt_at <= stamp,
        )
        .values(
            attempts=notifications.c.attempts + 1,
            next_attempt_at=stamp + timedelta(seconds=defaults.NOTIFY_CLAIM_SECONDS),
            sent_at=None,
        )
        .returning(*notifications.c)
    ).first()
    return None if row is None else _notice(row)


@dataclass(frozen=True)
class Delivery:
    """How one attempt went: `ok`, the receiver's answer code if any, and what went wrong; `final` failures
    (a binding that cannot be bound) are not tried again."""

    ok: bool
    response_code: int | None = None
    error: str = ""
    final: bool = False


def settle(conn: Connection, notice: Notice, delivery: Delivery, stamp: datetime) -> NoticeStatus:
    """Record the attempt `notice` was claimed for; the status it is left in."""
    delay = None if delivery.final else retry_delay(notice.attempts)
    if delivery.ok:
        status, values = NoticeStatus.SENT, {"finished_at": stamp}
    elif delay is None:
        status, values = NoticeStatus.FAILED, {"finished_at": stamp}
    else:
        status, values = NoticeStatus.PENDING, {"next_attempt_at": stamp + timedelta(seconds=delay)}
    conn.execute(
        update(notifications)
        .where(notifications.c.id == notice.id, notifications.c.attempts == notice.attempts)
        .values(status=status.value, response_code=delivery.response_code, error=delivery.error[:2000], **values)
    )
    return status


def due_to_send(conn: Connection, stamp: datetime, resend_before: datetime, limit: int) -> list[str]:
    """PENDING notifications due by `stamp` and not handed on since `resend_before`, marked handed on now."""
    ids = list(
        conn.execute(
            select(notifications.c.id)
            .where(
                notifications.c.status == NoticeStatus.PENDING.value,
                notifications.c.next_attempt_at <= stamp,
                notifications.c.sent_at.is_(None) | (notifications.c.sent_at < resend_before),
            )
            .order_by(notifications.c.next_attempt_at)
            .limit(limit)
        ).scalars()
    )
    if ids:
        conn.execute(update(notifications).where(notifications.c.id.in_(ids)).values(sent_at=stamp))
    return ids


def of_execution(conn: Connection, execution_id: str) -> list[Notice]:
    """An execution's notifications, oldest first."""
    rows = conn.execute(
        select(notifications)
        .where(notifications.c.execution_id == execution_id)
        .order_by(notifications.c.created_at, notifications.c.type, notifications.c.target)
    )
    return [_notice(row) for row in rows]


# -- what a notification says


def facts_of(notice: Notice, execution: Execution) -> Facts:
    """What a notification tells: its event as recorded, the execution as it is."""
    return Facts(
        event=notice.event,
        pipeline=execution.pipeline_name,
        project=execution.project,
        execution_id=execution.id,
        execution_index=execution.index,
        status=execution.status.value,
        status_message=notice.message,
        stage=notice.stage,
        task=notice.task,
        reason=notice.reason,
    )


def lookup_for(facts: Facts, scope: Scope) -> Lookup:
    """Bindings of a notification: the event's own names, then the execution's (a task that has not run reads as
    empty, so an early event still goes out)."""
    names = facts.names()
    lenient = replace(scope, lenient=True)

    def lookup(text: str) -> object:
        name = text.strip()
        return names[name] if name in NOTICE_NAMES else lenient.lookup(text)

    return lookup


@dataclass(frozen=True)
class WebhookRequest:
    """The HTTP request a webhook notification becomes."""

    method: str
    url: str
    headers: Mapping[str, str]
    payload: object


def render_webhook(hook: Webhook, facts: Facts, lookup: Lookup, secrets: Secrets) -> WebhookRequest:
    """A webhook bound for its event; raises BindingError when it cannot be (a url that binds to no text).

    A JSON payload (an object, or text that parses as JSON) takes bound values as JSON values, never changing its
    shape; any other text payload is sent as text.
    """
    url = bind_url(hook.url, lookup)
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise BindingError(f"the url binds to {str(url)[:80]!r}, not an http:// or https:// URL")
    headers = bind_headers(dict(hook.headers), lookup, "headers")
    if not isinstance(headers, Mapping):
        raise BindingError("the headers do not bind to an object")
    payload = default_body(facts) if hook.payload is None else resolve(_parsed(hook.payload), lookup)
    return WebhookRequest(
        hook.action, url, {str(name): str(value) for name, value in headers.items()}, mask_secrets(payload, secrets)
    )


def _parsed(payload: object) -> object:
    """A text payload that is JSON as its structure (bindings inside its strings), else the text as it is."""
    if not isinstance(payload, str):
        return payload
    try:
        parsed: object = json.loads(payload)
    except ValueError:
        return payload
    return parsed if isinstance(parsed, dict | list) else payload


@dataclass(frozen=True)
class Mail:
    """The mail an email notification becomes."""

    to: Sequence[str]
    subject: str
    body: str
    endpoint: str


def render_email(mail: Email, facts: Facts, lookup: Lookup, secrets: Secrets) -> Mail:
    """An email bound for its event, secrets masked; the subject always one line."""
    subject = as_text(resolve(mail.subject, lookup)) if mail.subject else text_line(facts)
    body = as_text(resolve(mail.body, lookup)) if mail.body else default_mail_body(facts)
    subject = " ".join(secrets.mask(subject).split())[:900]
    return Mail(tuple(mail.to), subject, secrets.mask(body), mail.endpoint)
