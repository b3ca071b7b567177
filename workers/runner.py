"""Running one task run in a worker: claim it, resolve its bindings, call its executor, record the outcome.

This is the body of the Celery task `rollway.run_task`, kept free of Celery so that any dispatcher can
call it. A failure is recorded in the database first and then raised as TaskFailed, which is what makes
Celery fire the `link_error` errback that hands the failure to the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestrator.bindings import Scope, resolve
from orchestrator.engine import Dispatcher, Engine
from orchestrator.errors import RollwayError, TaskFailed
from orchestrator.execution import ExecutionState, TaskRun
from orchestrator.status import RunStatus
from orchestrator.store import Store
from orchestrator.tasktypes import TASK_TYPES
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
        claimed = self.store.claim(task_run_id, attempt)
        if claimed is None:
            log.info("task run %s attempt %s is not queued any more; nothing to do", task_run_id, attempt)
            return
        run, state = claimed
        if not state.execution.status.is_active:
            with self.store.transaction() as tx:
                tx.finish_task_run(
                    run.id, RunStatus.CANCELED, f"not run: the execution is {state.execution.status}", None, None
                )
            return
        scope = state.scope()
        task_input: Mapping[str, Any] = {}
        try:
            task_input = self._resolve_input(state, run, scope)
            outcome = self._execute(state, run, task_input, scope)
        except RollwayError as error:
            outcome = Failed(error.message)
        self._record(run, outcome, task_input)

    @staticmethod
    def _resolve_input(state: ExecutionState, run: TaskRun, scope: Scope) -> Mapping[str, Any]:
        task = state.pipeline.task(run.key)
        deferred = TASK_TYPES[task.type].expression_fields
        return {name: value if name in deferred else resolve(value, scope.lookup) for name, value in task.input.items()}

    def _execute(self, state: ExecutionState, run: TaskRun, task_input: Mapping[str, Any], scope: Scope) -> Outcome:
        executor = self.executors.get(run.type)
        if executor is None:
            return Failed(f"this worker has no executor for {run.type} tasks")
        call = TaskCall(state.pipeline.task(run.key), task_input, scope, run.attempt, run.state)
        try:
            return executor.execute(call)
        except RollwayError as error:
            return Failed(error.message)
        except Exception as error:  # a bug in an executor must fail the task, not leave it RUNNING forever
            log.exception("executor for %s tasks raised", run.type)
            return Failed(f"{type(error).__name__}: {error}")

    def _record(self, run: TaskRun, outcome: Outcome, task_input: Mapping[str, Any]) -> None:
        if isinstance(outcome, Succeeded):
            self.engine.task_succeeded(run, outcome.output, task_input)
            return
        if isinstance(outcome, Waiting):
            with self.store.transaction() as tx:
                again = tx.requeue_task_run(run.id, run.attempt, outcome.state, outcome.message, task_input)
            if again is not None:
                self.dispatcher.dispatch(again, countdown=outcome.countdown)
            return
        with self.store.transaction() as tx:
            tx.finish_task_run(run.id, RunStatus.FAILED, outcome.message, outcome.output, task_input)
        raise TaskFailed(outcome.message)
