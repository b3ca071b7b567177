"""Rollway's Celery tasks: a few lines each, they load, call and record through the process context."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.exceptions import Reject

from orchestrator.errors import DatabaseUnavailable
from workers.constants import TASK_PING, TASK_RUN, TASK_SWEEP

if TYPE_CHECKING:
    from workers.celery_app import Context


def register_tasks(app: Celery, context: Context) -> None:
    """Register the tasks on `app`, each working through `context`."""

    @app.task(name=TASK_RUN, bind=True)
    def run_task(self: Any, task_run_id: str, attempt: int) -> None:
        """Run one attempt of a task run; through a database outage its message goes back to the queue."""
        try:
            context.runner.run(task_run_id, attempt, f"{self.request.hostname} pid {os.getpid()}")
        except DatabaseUnavailable as error:
            raise Reject(error.message, requeue=True) from error

    @app.task(name=TASK_SWEEP)
    def sweep() -> str:
        """One pass of the sweep (`rollway beat` sends this every ROLLWAY_SWEEP_SECONDS)."""
        return str(context.sweeper.sweep())

    @app.task(name=TASK_PING, ignore_result=False)
    def ping() -> str:
        """A no-op that answers: health checks, and the raw-Celery baseline of the benchmarks."""
        return "pong"
