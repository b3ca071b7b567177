"""The queues work travels on. Task types name the queue their runs go to (`tasktypes.py`); workers subscribe to them
by these names (`rollway worker -Q kubernetes`)."""

from __future__ import annotations

QUEUE_ROLLBACK = "rollback"
QUEUE_ORCHESTRATOR = "orchestrator"
QUEUE_KUBERNETES = "kubernetes"
QUEUE_HTTP = "http"
QUEUE_DEFAULT = "default"
# A worker takes from its queues in turn, and a queue that just delivered goes to the back of the turn: an idle
# `rollback` queue that gets a message is served within one pass over the queues, whatever waits elsewhere.
# First in the list, it is also the first a starting worker looks at.
QUEUES = (QUEUE_ROLLBACK, QUEUE_ORCHESTRATOR, QUEUE_KUBERNETES, QUEUE_HTTP, QUEUE_DEFAULT)
