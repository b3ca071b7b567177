"""Worker log lines name the task run they are about: `[RollingUpgrade-Example #12 / Development / Verify
Deployment] ...`, so a line read in a worker's log leads to the execution without looking up ids.

The runner names the run it runs (`naming`); a filter on the loggers a task runs through (the same ones that mask
secrets, `logredaction.LOGGERS`) puts the name in front of each record's message. Celery's own lines about the task
(received, succeeded) carry the same name, as the `shadow` name the dispatcher sends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from workers.logredaction import LOGGERS

_current: ContextVar[str] = ContextVar("rollway_task_label", default="")


@contextmanager
def naming(label: str) -> Iterator[None]:
    """Name `label` in what the worker logs while the block runs."""
    token = _current.set(label)
    try:
        yield
    finally:
        _current.reset(token)


class NamingFilter(logging.Filter):
    """Puts the current task run's name in front of a record's message; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        label = _current.get()
        if label and not getattr(record, "rollway_task", None):
            record.msg, record.args = f"[{label}] {record.getMessage()}", None
            record.rollway_task = label
        return True


_FILTER = NamingFilter()


def install() -> None:
    """Put the filter on the worker's loggers (once per process however often it is called)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
