"""Dispatchers: how the engine hands a queued task run to a worker.

`CeleryDispatcher` sends `rollway.run_task` to the queue of the task's type with the `link_error`
errback that reports a failure back to the orchestrator queue. `InlineDispatcher` runs task runs in the
calling thread, in order, with no broker at all: the engine's own tests use it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from celery import Celery

from orchestrator.errors import TaskFailed
from orchestrator.execution import TaskRun
from workers.constants import QUEUE_ORCHESTRATOR, TASK_FAILED, TASK_RUN, queue_for
from workers.runner import TaskRunner


class CeleryDispatcher:
    """Sends task runs to Celery workers."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, run: TaskRun, countdown: float = 0.0) -> None:
        # Immutable, so Celery calls the errback with our task run id only, as a message on the orchestrator
        # queue, rather than inline in the failing worker with a live exception.
        errback = self.app.signature(TASK_FAILED, args=(run.id,), immutable=True, queue=QUEUE_ORCHESTRATOR)
        self.app.send_task(
            TASK_RUN,
            args=(run.id, run.attempt),
            queue=queue_for(run.type),
            countdown=countdown or None,
            link_error=errback,
        )


class InlineDispatcher:
    """Keeps dispatched task runs in memory and runs them one by one when drained."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.pending: deque[tuple[str, int, float]] = deque()
        self.sleep = sleep

    def dispatch(self, run: TaskRun, countdown: float = 0.0) -> None:
        self.pending.append((run.id, run.attempt, countdown))

    def drain(self, runner: TaskRunner) -> int:
        """Run everything dispatched, including what running it dispatches; how many attempts ran."""
        count = 0
        while self.pending:
            task_run_id, attempt, countdown = self.pending.popleft()
            if countdown:
                self.sleep(countdown)
            count += 1
            try:
                runner.run(task_run_id, attempt)
            except TaskFailed:
                runner.engine.task_failed(task_run_id)
        return count
