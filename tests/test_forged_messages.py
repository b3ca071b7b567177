"""Messages on the broker that Rollway did not send: whoever can write to Redis can put anything on a queue, and
none of it may fail, repeat or strand an execution."""

from __future__ import annotations

from typing import Any

from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.store import Store
from workers.celery_app import make_celery
from workers.constants import QUEUE_DEFAULT, TASK_RUN
from workers.dispatcher import CeleryDispatcher

from rollway_testing import WorkerProcess

FORGED: list[tuple[tuple[object, ...], dict[str, object]]] = [
    (("not-a-task-run", 1), {}),  # no such run
    (("00000000-0000-0000-0000-000000000000", 1), {}),  # a well-formed id of nothing
    (({"$ne": None}, 1), {}),  # not an id at all
    (("00000000-0000-0000-0000-000000000000", "1; DROP TABLE task_runs"), {}),
    (("00000000-0000-0000-0000-000000000000", 10**30), {}),  # too large for the attempt column
    (("00000000-0000-0000-0000-000000000000", True), {}),
    ((), {"task_run_id": "x", "attempt": 1, "fail": True}),  # names Rollway never sends
]


def pipeline() -> dict[str, Any]:
    task = {"type": "Condition", "input": {"condition": "true"}}
    stage = {"taskOrder": ["Check"], "tasks": {"Check": task}}
    return {"name": "Release", "project": "p", "enabled": True, "stageOrder": ["S"], "stages": {"S": stage}}


def test_forged_run_task_messages_are_dropped_and_the_real_run_completes_once(
    settings: Settings, worker: WorkerProcess, wait: Any
) -> None:
    store = Store.connect(settings.database_url)
    try:
        # Given a worker, and forged run_task messages of every shape on its queue
        celery = make_celery(settings)
        for args, kwargs in FORGED:
            celery.send_task(TASK_RUN, args=args, kwargs=kwargs, queue=QUEUE_DEFAULT)
        # ... and a forged message for a real run's attempt that is not queued (its attempt 1 is, not 7)
        engine = Engine(store, CeleryDispatcher(celery))
        record = store.add_pipeline(load_pipeline(pipeline(), store.rollback_target))
        execution = engine.trigger(record, {})
        run = store.task_runs(execution.id)[0]
        celery.send_task(TASK_RUN, args=(run.id, run.attempt + 6), queue=QUEUE_DEFAULT)

        # When the worker has taken them all
        wait(lambda: store.get_execution(execution.id).status.is_terminal, timeout=60, what="the release to end")
        wait(lambda: worker.log().count("ignored a malformed") >= 5, timeout=30, what="the malformed messages")

        # Then the release completed, its one task ran once, and the worker is still up
        assert store.get_execution(execution.id).status is ExecutionStatus.COMPLETED
        [ran] = store.task_runs(execution.id)
        assert ran.status is RunStatus.COMPLETED and ran.attempt == 1
        assert worker.process.poll() is None
        assert "Traceback" not in worker.log()
    finally:
        store.dispose()
