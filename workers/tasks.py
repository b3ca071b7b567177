"""Rollway's Celery tasks: a few lines each, they load, call and record through the process context."""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.exceptions import Reject
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.errors import DatabaseUnavailable
from workers.constants import TASK_NOTIFY, TASK_PING, TASK_RUN, TASK_SWEEP

if TYPE_CHECKING:
    from workers.celery_app import Context

log = logging.getLogger(__name__)

# What Rollway itself sends: a task run's id (a UUID) and an attempt number. Anyone who can write to the broker
# can send anything; a message of another shape is dropped with one line in the log, never run or retried.
_RUN_ID = re.compile(r"^[0-9a-f-]{1,36}$")
MAX_ATTEMPT = 2**31 - 1


def well_formed(task_run_id: object, attempt: object) -> tuple[str, int] | None:
    """A `run_task` message's (task run id, attempt) if they are of the shape Rollway sends, else None."""
    if not isinstance(task_run_id, str) or _RUN_ID.match(task_run_id) is None:
        return None
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt <= MAX_ATTEMPT:
        return None
    return task_run_id, attempt


def register_tasks(app: Celery, context: Context) -> None:
    """Register the tasks on `app`, each working through `context`."""

    @app.task(name=TASK_RUN, bind=True)
    def run_task(
        self: Any, /, task_run_id: object = None, attempt: object = None, *extra: object, **named: object
    ) -> str:
        """Run one attempt of a task run; through a database outage its message goes back to the queue. Its
        result (which Flower shows) says in a word what became of the attempt: "succeeded", "failed", ...

        A message that claims an attempt it has no right to is harmless: the claim takes only the attempt that is
        queued, once. Malformed ones are dropped here.
        """
        checked = None if extra or named else well_formed(task_run_id, attempt)
        if checked is None:
            log.warning("ignored a malformed %s message: %.120r", TASK_RUN, (task_run_id, attempt, *extra, named))
            return "malformed"
        try:
            return context.runner.run(*checked, f"{self.request.hostname} pid {os.getpid()}")
        except DatabaseUnavailable as error:
            raise Reject(error.message, requeue=True) from error

    @app.task(name=TASK_NOTIFY)
    def notify(notice_id: object = None, *extra: object, **named: object) -> None:
        """Send one pipeline notification; through a database outage it is left to the sweep, which sends it
        again once it is due."""
        if extra or named or not isinstance(notice_id, str) or _RUN_ID.match(notice_id) is None:
            log.warning("ignored a malformed %s message: %.120r", TASK_NOTIFY, (notice_id, *extra, named))
            return
        try:
            context.notifier.send(notice_id)
        except (DatabaseUnavailable, SQLAlchemyError) as error:
            log.warning("notification %s is left to the sweep: %s", notice_id, error)

    @app.task(name=TASK_SWEEP)
    def sweep() -> str:
        """One pass of the sweep (`rollway beat` sends this every ROLLWAY_SWEEP_SECONDS)."""
        return str(context.sweeper.sweep())

    @app.task(name=TASK_PING, ignore_result=False)
    def ping() -> str:
        """A no-op that answers: health checks, and the raw-Celery baseline of the benchmarks."""
        return "pong"
