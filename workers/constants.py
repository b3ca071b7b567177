"""Names shared by every Rollway process: queues, Celery task names, and which queue runs which task type."""

from __future__ import annotations

from collections.abc import Mapping

QUEUE_ROLLBACK = "rollback"
QUEUE_ORCHESTRATOR = "orchestrator"
QUEUE_KUBERNETES = "kubernetes"
QUEUE_HTTP = "http"
QUEUE_DEFAULT = "default"
# A worker takes from its queues in turn, and a queue that just delivered goes to the back of the turn: an idle
# `rollback` queue that gets a message is served within one pass over the queues, whatever waits elsewhere.
# First in the list, it is also the first a starting worker looks at.
QUEUES = (QUEUE_ROLLBACK, QUEUE_ORCHESTRATOR, QUEUE_KUBERNETES, QUEUE_HTTP, QUEUE_DEFAULT)

TASK_RUN = "rollway.run_task"
TASK_SWEEP = "rollway.sweep"
TASK_PING = "rollway.ping"
TASK_NOTIFY = "rollway.notify"
# Notifications call other systems (webhooks, SMTP servers) that may answer slowly, as REST and POLL tasks do:
# they share the `http` queue, never the orchestrator's or a rollback's.
QUEUE_NOTIFY = QUEUE_HTTP

# A slow cluster or a slow web service must never starve orchestration or each other.
QUEUE_BY_TASK_TYPE: Mapping[str, str] = {
    "REST": QUEUE_HTTP,
    "POLL": QUEUE_HTTP,
    "METRIC": QUEUE_HTTP,
    "K8S": QUEUE_KUBERNETES,
}


def queue_for(task_type: str, rollback: bool = False) -> str:
    """The queue that carries task runs of a task type; every task of a rollback execution goes to `rollback`."""
    return QUEUE_ROLLBACK if rollback else QUEUE_BY_TASK_TYPE.get(task_type, QUEUE_DEFAULT)
