"""Names shared by every Rollway process: queues, Celery task names, and which queue runs which task type."""

from __future__ import annotations

from collections.abc import Mapping

# The queue names live with the task types that name them; imported here so every process finds them in one place.
from orchestrator.queues import QUEUE_DEFAULT, QUEUE_HTTP, QUEUE_KUBERNETES, QUEUE_ORCHESTRATOR, QUEUE_ROLLBACK, QUEUES
from orchestrator.tasktypes import TASK_TYPES, Runner

__all__ = [
    "QUEUES",
    "QUEUE_BY_TASK_TYPE",
    "QUEUE_DEFAULT",
    "QUEUE_HTTP",
    "QUEUE_KUBERNETES",
    "QUEUE_ORCHESTRATOR",
    "QUEUE_ROLLBACK",
    "TASK_PING",
    "TASK_RUN",
    "TASK_SWEEP",
    "queue_for",
]

TASK_RUN = "rollway.run_task"
TASK_SWEEP = "rollway.sweep"
TASK_PING = "rollway.ping"
TASK_NOTIFY = "rollway.notify"
# Notifications call other systems (webhooks, SMTP servers) that may answer slowly, as REST and POLL tasks do:
# they share the `http` queue, never the orchestrator's or a rollback's.
QUEUE_NOTIFY = QUEUE_HTTP

# Each task type declares its queue (`tasktypes.py`): a slow cluster or a slow web service never starves
# orchestration or each other.
QUEUE_BY_TASK_TYPE: Mapping[str, str] = {
    spec.name: spec.queue for spec in TASK_TYPES.values() if spec.runs_in is Runner.WORKER
}


def queue_for(task_type: str, rollback: bool = False) -> str:
    """The queue that carries task runs of a task type; every task of a rollback execution goes to `rollback`."""
    return QUEUE_ROLLBACK if rollback else QUEUE_BY_TASK_TYPE.get(task_type, QUEUE_DEFAULT)
