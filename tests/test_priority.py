"""Rollbacks first: tasks of rollback executions go ahead of release traffic already waiting in the queues,
with a real worker on a real Redis."""

from __future__ import annotations

from typing import Any

from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store
from workers.celery_app import make_celery
from workers.dispatcher import CeleryDispatcher


def pipeline(name: str) -> dict[str, Any]:
    task = {"type": "Condition", "input": {"condition": "true"}}
    stage = {"taskOrder": ["Check"], "tasks": {"Check": task}}
    return {
        "name": name,
        "project": "p",
        "enabled": True,
        "concurrency": 100,
        "stageOrder": ["S"],
        "stages": {"S": stage},
    }


def test_a_rollback_task_queued_behind_a_burst_of_releases_runs_first(
    settings: Settings, worker_factory: Any, wait: Any
) -> None:
    # Given thirty release tasks waiting in the queue with no worker up, and then one rollback execution's task
    store = Store.connect(settings.database_url)
    try:
        check_rollback_runs_first(store, settings, worker_factory, wait)
    finally:
        store.dispose()


def check_rollback_runs_first(store: Store, settings: Settings, worker_factory: Any, wait: Any) -> None:
    engine = Engine(store, CeleryDispatcher(make_celery(settings)))
    release = store.add_pipeline(load_pipeline(pipeline("Release"), store.rollback_target))
    undo = store.add_pipeline(load_pipeline(pipeline("Undo"), store.rollback_target))
    releases = [engine.trigger(release, {}).id for _ in range(30)]
    with store.transaction() as tx:
        rollback = tx.insert_execution(undo, {}, "undo", requested_by="test", rollback_of=releases[0]).id
    engine.advance(rollback)

    # When a worker of one process starts on that backlog
    worker_factory("-c", "1")
    every = [*releases, rollback]
    wait(
        lambda: all(store.get_execution(item).status is ExecutionStatus.COMPLETED for item in every),
        timeout=90,
        what="every execution to complete",
    )

    # Then the rollback's task started before any release task did
    started = {item: store.task_runs(item)[0].started_at for item in every}
    assert min(started, key=lambda item: started[item]) == rollback
