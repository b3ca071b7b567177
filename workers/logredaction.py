"""What a worker logs while it runs a task goes through redaction: the task's secrets never reach a log line.

An executor may log an error that quotes its input (a client's exception names the URL it called, a traceback
shows a header). The runner sets the secret values of the task it runs (`secrets_of_this_task`), and a filter
on the loggers of the worker's own modules masks them, with URL passwords and credential headers, in each
record's message and traceback before any handler formats it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from orchestrator.redaction import NO_SECRETS, Secrets, redact_message

# The loggers of the code a task runs through in a worker (a logger's filter sees only its own records).
LOGGERS = (
    "workers.runner",
    "workers.executors.base",
    "workers.executors.condition",
    "workers.executors.k8s",
    "workers.executors.poll",
    "workers.executors.rest",
    "workers.http",
    "workers.egress",
    "workers.cluster",
    "workers.configuration",
    "workers.heartbeat",
    "workers.dbretry",
    "orchestrator.engine",
    "celery.app.trace",
)

_current: ContextVar[Secrets] = ContextVar("rollway_task_secrets", default=NO_SECRETS)


@contextmanager
def secrets_of_this_task(secrets: Secrets) -> Iterator[None]:
    """Mask `secrets` in what the worker logs while the block runs."""
    token = _current.set(secrets)
    try:
        yield
    finally:
        _current.reset(token)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and traceback; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _current.get()
        message = record.getMessage()
        masked = redact_message(message, secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_message(logging.Formatter().formatException(record.exc_info), secrets)
        if record.stack_info:
            record.stack_info = redact_message(record.stack_info, secrets)
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Put the filter on the worker's loggers (once per process however often it is called)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
