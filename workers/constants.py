"""Names shared by every Rollway process: queues, Celery task names, and which queue runs which task type."""

from __future__ import annotations

from collections.abc import Mapping

QUEUE_ORCHESTRATOR = "orchestrator"
QUEUE_KUBERNETES = "kubernetes"
QUEUE_HTTP = "http"
QUEUE_DEFAULT = "default"
QUEUES = (QUEUE_ORCHESTRATOR, QUEUE_KUBERNETES, QUEUE_HTTP, QUEUE_DEFAULT)

TASK_RUN = "rollway.run_task"
TASK_SWEEP = "rollway.sweep"
TASK_PING = "rollway.ping"

# Redis priorities (0 is served first): every queue's priority-0 messages are taken before any other, so tasks
# of rollback executions and the sweep go ahead of release traffic on whatever queue their type uses.
PRIORITY_ROLLBACK = 0
PRIORITY_SWEEP = 0
PRIORITY_RELEASE = 6

# A slow cluster or a slow web service must never starve orchestration or each other.
QUEUE_BY_TASK_TYPE: Mapping[str, str] = {
    "REST": QUEUE_HTTP,
    "POLL": QUEUE_HTTP,
    "METRIC": QUEUE_HTTP,
    "K8S": QUEUE_KUBERNETES,
}


def queue_for(task_type: str) -> str:
    """The queue that carries task runs of a task type."""
    return QUEUE_BY_TASK_TYPE.get(task_type, QUEUE_DEFAULT)
