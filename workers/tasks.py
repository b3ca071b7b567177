"""Rollway's Celery tasks: a few lines each, they load, call and record through the process context."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

from orchestrator.errors import TaskFailed
from workers.constants import TASK_FAILED, TASK_PING, TASK_RUN

if TYPE_CHECKING:
    from workers.celery_app import Context


def register_tasks(app: Celery, context: Context) -> None:
    """Register the tasks on `app`, each working through `context`."""

    @app.task(name=TASK_RUN, throws=(TaskFailed,))
    def run_task(task_run_id: str, attempt: int) -> None:
        """Run one attempt of a task run (the errback hears of a failure)."""
        context.runner.run(task_run_id, attempt)

    @app.task(name=TASK_FAILED)
    def task_failed(task_run_id: str) -> None:
        """The `link_error` errback of run_task: hand the failure to the engine."""
        context.engine.task_failed(task_run_id)

    @app.task(name=TASK_PING, ignore_result=False)
    def ping() -> str:
        """A no-op that answers: health checks, and the raw-Celery baseline of the benchmarks."""
        return "pong"
