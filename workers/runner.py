"""Running one task run in a worker: claim it, call its executor, record the outcome.

This is the body of the Celery task `rollway.run_task`, kept free of Celery so that any dispatcher can
call it. The run's input was bound when it was queued, so claiming it is all the worker reads. A failure
is recorded in the database first and then raised as TaskFailed, which is what makes Celery fire the
`link_error` errback that hands the failure to the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from orchestrator.engine import Dispatcher, Engine
from orchestrator.errors import RollwayError, TaskFailed
from orchestrator.execution import TaskRun
from orchestrator.status import RunStatus
from orchestrator.store import Store
from workers.executors.base import Executor, Failed, Outcome, Succeeded, TaskCall, Waiting

log = logging.getLogger(__name__)


class TaskRunner:
    """Runs task runs for one worker process."""

    def __init__(self, store: Store, engine: Engine, dispatcher: Dispatcher, executors: Mapping[str, Executor]):
        self.store = store
        self.engine = engine
        self.dispatcher = dispatcher
        self.executors = executors

    def run(self, task_run_id: str, attempt: int) -> None:
        """Run one attempt of a task run; raises TaskFailed after recording a failure."""
        run = self.store.claim(task_run_id, attempt)
        if run is None:
            with self.store.transaction() as tx:
                canceled = tx.cancel_abandoned(task_run_id, attempt)
            reason = "its execution is no longer running" if canceled else "not queued for this attempt"
            log.info("task run %s attempt %s not run: %s", task_run_id, attempt, reason)
            return
        self._record(run, self._execute(run))

    def _execute(self, run: TaskRun) -> Outcome:
        executor = self.executors.get(run.type)
        if executor is None:
            return Failed(f"this worker has no executor for {run.type} tasks")
        call = TaskCall(run.type, run.input or {}, run.bindings, run.attempt, run.state, run.endpoints)
        try:
            return executor.execute(call)
        except RollwayError as error:
            return Failed(error.message)
        except Exception as error:  # a bug in an executor must fail the task, not leave it RUNNING forever
            log.exception("executor for %s tasks raised", run.type)
            return Failed(f"{type(error).__name__}: {error}")

    def _record(self, run: TaskRun, outcome: Outcome) -> None:
        if isinstance(outcome, Succeeded):
            self.engine.task_succeeded(run, outcome.output)
            return
        if isinstance(outcome, Waiting):
            with self.store.transaction() as tx:
                again = tx.requeue_task_run(run.id, run.attempt, outcome.state, outcome.message)
            if again is not None:
                self.dispatcher.dispatch(again, countdown=outcome.countdown)
            return
        with self.store.transaction() as tx:
            tx.finish_task_run(run.id, RunStatus.FAILED, outcome.message, outcome.output)
        raise TaskFailed(outcome.message)
