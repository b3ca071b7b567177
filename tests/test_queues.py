"""Queues with a real worker on a real Redis: tasks of rollback executions go ahead of release traffic already
waiting, and a single machine's worker with `--beat` sends again a message that was lost."""

from __future__ import annotations

from typing import Any

from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.execution import Relation
from orchestrator.settings import Settings
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store
from workers.celery_app import make_celery
from workers.dispatcher import CeleryDispatcher

from rollway_testing import WorkerProcess


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
        rollback = tx.insert_execution(
            undo, {}, "undo", requested_by="test", parent_id=releases[0], relation=Relation.ROLLBACK
        ).id
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


def test_a_worker_with_beat_sends_again_a_message_that_was_lost(settings: Settings, tmp_path: Any, wait: Any) -> None:
    # Given a release whose first message never reached Redis (the process that committed it died at once)
    from workers.dispatcher import InlineDispatcher

    store = Store.connect(settings.database_url)
    try:
        record = store.add_pipeline(load_pipeline(pipeline("Lost"), store.rollback_target))
        execution = Engine(store, InlineDispatcher()).trigger(record, {})

        # When a single machine's worker starts with its beat, a lease of 2 s and a sweep every second
        quick = settings.with_changes(lease_seconds=2.0, sweep_seconds=1.0)
        worker = WorkerProcess(quick, tmp_path / "worker.log", "-c", "1", "--beat")
        try:
            worker.wait_ready()
            # Then its sweep sends the message again, and the release completes
            wait(
                lambda: store.get_execution(execution.id).status is ExecutionStatus.COMPLETED,
                timeout=60,
                what="the lost release to complete",
            )
        finally:
            worker.stop()
        assert "rollway.sweep" in worker.log()
    finally:
        store.dispose()
