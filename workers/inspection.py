"""What the broker and the live workers say about themselves: how many messages wait in each queue, and each worker's
queues, pool, processed count and the Rollway task runs it is running.

The workers answer Celery's inspect broadcast; one that does not answer within the timeout is left out (it is busy
beyond reply, or gone). The first broadcast waits the whole timeout, since nobody knows how many workers there are;
the next ones ask only the workers that answered and return as soon as all of them have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from celery import Celery

from workers.constants import TASK_RUN
from workers.tasks import well_formed

# How long the API waits for workers to answer a broadcast: short, because a page or a scrape waits for it.
INSPECT_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class ActiveTask:
    """A `rollway.run_task` a worker is running: the task run and attempt its message names."""

    task_run_id: str
    attempt: int
    celery_id: str


@dataclass(frozen=True)
class WorkerReport:
    """One live worker as it describes itself."""

    name: str
    queues: tuple[str, ...]
    pool: str
    max_concurrency: int | None
    processed: int
    active: tuple[ActiveTask, ...]


def queue_depths(celery: Celery, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue of the broker (under ROLLWAY_REDIS_PREFIX, which the channel applies; each
    queue's priority sub-queues included)."""
    depths = {}
    with celery.connection_for_read() as connection:
        channel: Any = connection.default_channel  # kombu's virtual channel (typed as the bare protocol)
        for name in queues:
            # Not passive: kombu's passive check ignores the key prefix and calls every prefixed queue missing. On
            # the Redis and in-memory transports a declaration writes nothing (bindings are made by consumers).
            _, depths[name], _ = channel.queue_declare(queue=name)
    return depths


def worker_count(celery: Celery, timeout: float = INSPECT_TIMEOUT_SECONDS) -> int:
    """How many workers answer a ping within `timeout`."""
    return sum(len(reply) for reply in celery.control.ping(timeout=timeout) or [])


def workers(celery: Celery, timeout: float = INSPECT_TIMEOUT_SECONDS) -> list[WorkerReport]:
    """Every worker that answers within `timeout`, by name."""
    stats: dict[str, Any] = celery.control.inspect(timeout=timeout).stats() or {}
    if not stats:
        return []
    names = sorted(stats)
    asked = celery.control.inspect(destination=names, timeout=timeout, limit=len(names))
    queues: dict[str, Any] = asked.active_queues() or {}
    active: dict[str, Any] = asked.active() or {}
    return [_report(name, stats[name], queues.get(name) or [], active.get(name) or []) for name in names]


def _report(name: str, stats: Mapping[str, Any], queues: list[Any], active: list[Any]) -> WorkerReport:
    pool = stats.get("pool") or {}
    implementation = str(pool.get("implementation") or "")
    maximum = pool.get("max-concurrency")
    totals = stats.get("total") or {}
    return WorkerReport(
        name=name,
        queues=tuple(sorted(str(queue.get("name")) for queue in queues if isinstance(queue, Mapping))),
        # "celery.concurrency.prefork:TaskPool" is the prefork pool.
        pool=implementation.partition(":")[0].rpartition(".")[2],
        max_concurrency=maximum if isinstance(maximum, int) else None,
        processed=sum(count for count in totals.values() if isinstance(count, int)),
        active=tuple(task for task in map(_active, active) if task is not None),
    )


def _active(item: object) -> ActiveTask | None:
    """The task run of an active task, or None for anything else (the sweep, a notification, a malformed one)."""
    if not isinstance(item, Mapping) or item.get("type") != TASK_RUN:
        return None
    args = item.get("args")
    if not isinstance(args, list | tuple) or len(args) != 2:
        return None
    checked = well_formed(*args)
    return None if checked is None else ActiveTask(checked[0], checked[1], str(item.get("id")))
