"""Dispatchers: how the engine hands a queued task run to a worker.

`CeleryDispatcher` sends `rollway.run_task` to the queue of the task's type; tasks of rollback executions go to
the `rollback` queue, so a burst of releases never delays putting an environment back. `InlineDispatcher`
runs task runs in the calling thread, in order, with no broker at all: the engine's own tests use it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP

from orchestrator.outbox import Dispatch
from workers.constants import QUEUE_NOTIFY, TASK_NOTIFY, TASK_RUN, queue_for
from workers.runner import TaskRunner

# Publishing gives up after about a second when the broker is away: the outbox keeps the message, and a
# trigger must answer rather than wait for Redis.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 0.5}


class CeleryDispatcher:
    """Sends task runs to Celery workers."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, item: Dispatch) -> None:
        self.app.send_task(
            TASK_RUN,
            args=(item.task_run_id, item.attempt),
            queue=queue_for(item.type, item.rollback),
            countdown=item.countdown or None,
            # What Flower and the worker's log lines call it: `rollway.run_task[Release #3 / Deploy / Apply]`.
            shadow=shadow_name(item.label),
            retry=True,
            retry_policy=PUBLISH_RETRY,
        )

    def notify(self, notice_id: str) -> None:
        self.app.send_task(TASK_NOTIFY, args=(notice_id,), queue=QUEUE_NOTIFY, retry=True, retry_policy=PUBLISH_RETRY)


def shadow_name(label: str) -> str | None:
    """The name a run's message shows instead of `rollway.run_task`, or None (the plain name) without a label.
    Control characters of stage or task names become `?`: the name is printed in log lines."""
    printable = "".join(char if char.isprintable() else "?" for char in label)
    return f"{TASK_RUN}[{printable}]" if label else None


class NamedMessages(AMQP):
    """Celery's message factory, except that a message's `task-sent` event carries its shadow name too.

    Celery names a task in the sender's event by its registered name, and in the worker's events by its shadow
    name. Flower keeps the fields of whichever event it takes last, and the sender's may well come after the
    worker's: without this, a run could show in Flower as a bare `rollway.run_task`.
    """

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        shadow = message.headers.get("shadow")  # Celery passes it positionally; the headers hold it either way
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


class InlineDispatcher:
    """Keeps dispatched task runs in memory and runs them one by one when drained."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.pending: deque[Dispatch] = deque()
        self.notices: list[str] = []
        self.sleep = sleep

    def dispatch(self, item: Dispatch) -> None:
        self.pending.append(item)

    def notify(self, notice_id: str) -> None:
        """Keep the notification's id: the engine's own tests send nothing, and look at what was owed."""
        self.notices.append(notice_id)

    def drain(self, runner: TaskRunner) -> int:
        """Run everything dispatched, including what running it dispatches; how many attempts ran."""
        count = 0
        while self.pending:
            item = self.pending.popleft()
            if item.countdown:
                self.sleep(item.countdown)
            count += 1
            runner.run(item.task_run_id, item.attempt)
        return count
