"""The execution engine: starts executions, advances them as tasks finish, and turns failures into rollbacks.

Decisions come from the pure planner and rollback policy; the engine only loads state from the store,
records what was decided, and hands ready task runs to a `Dispatcher` (Celery in production). Every
recorded change is a conditional status transition, so engines in many processes can act on the same
execution at once without doing anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from orchestrator import expressions, planner, rollback
from orchestrator.bindings import resolve
from orchestrator.errors import InputInvalid, PipelineDisabled, Problem
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, TaskRun
from orchestrator.pipeline import Pipeline, TaskKey
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.store import Store

log = logging.getLogger(__name__)

ROLLING_BACK = "rolling back: "


class Dispatcher(Protocol):
    """Sends a queued task run to a worker."""

    def dispatch(self, run: TaskRun, countdown: float = 0.0) -> None:
        """Have a worker run `run` for its current attempt, after `countdown` seconds."""


def bind_input(pipeline: Pipeline, given: Mapping[str, Any]) -> dict[str, Any]:
    """An execution's input: the pipeline's defaults overlaid with what was given.

    Raises InputInvalid listing every unknown name and every mandatory input left empty.
    """
    problems = [
        Problem(f"input.{name}", f"pipeline '{pipeline.name}' has no input named '{name}'")
        for name in given
        if name not in pipeline.input
    ]
    values = {**pipeline.input, **{name: value for name, value in given.items() if name in pipeline.input}}
    problems += [
        Problem(f"input.{name}", f"is mandatory: {pipeline.input_meta[name].description or 'give a value'}")
        for name in pipeline.mandatory_inputs()
        if values.get(name) in (None, "")
    ]
    if problems:
        raise InputInvalid(f"the input of pipeline '{pipeline.name}' has {len(problems)} problem(s)", problems)
    return values


def _describe(key: TaskKey) -> str:
    return f"{key[0]}.{key[1]}"


class Engine:
    """Moves executions forward."""

    def __init__(self, store: Store, dispatcher: Dispatcher) -> None:
        self.store = store
        self.dispatcher = dispatcher

    def trigger(
        self, record: PipelineRecord, given: Mapping[str, Any], comments: str = "", requested_by: str = ""
    ) -> Execution:
        """Start an execution of a saved pipeline (or queue it behind the running ones)."""
        if not record.pipeline.enabled:
            raise PipelineDisabled(f"pipeline '{record.name}' is disabled; enable it before running it")
        values = bind_input(record.pipeline, given)
        execution = self.store.create_execution(record, values, comments, requested_by)
        if execution.status is ExecutionStatus.RUNNING:
            self.advance(execution.id)
        return execution

    def advance(self, execution_id: str) -> None:
        """Start whatever is ready; complete the execution when nothing is left to run."""
        state = self.store.load_state(execution_id)
        if not state.execution.status.is_active:
            return
        scope = state.scope()
        step = planner.plan(state.pipeline, state.statuses(), lambda text: expressions.check(text, scope.lookup))
        if step.skip:
            self.store.settle_task_runs(execution_id, step.skip, RunStatus.SKIPPED)
        if step.fail:
            self.store.settle_task_runs(execution_id, step.fail, RunStatus.FAILED)
            key, message = step.fail[0]
            self._on_failure(self.store.load_state(execution_id), key, message)
            return
        for run in self.store.queue_task_runs(execution_id, step.start):
            self.dispatcher.dispatch(run)
        if step.done:
            self._complete(state)

    def task_succeeded(self, run: TaskRun, output: Mapping[str, Any], task_input: Mapping[str, Any]) -> None:
        """Record a task run's output and move its execution on."""
        if self.store.finish_task_run(run.id, RunStatus.COMPLETED, "", output=output, input=task_input):
            self.advance(run.execution_id)

    def task_failed(self, task_run_id: str) -> None:
        """Handle a failed task run: go on (ignoreFailure), roll back (a link covers it) or fail the execution."""
        run = self.store.get_task_run(task_run_id)
        if not run.status.is_terminal:
            # The worker died or lost its database before it could record why.
            self.store.finish_task_run(run.id, RunStatus.FAILED, "the worker stopped before recording a result")
            run = self.store.get_task_run(task_run_id)
        if run.status is not RunStatus.FAILED:
            return
        self._on_failure(self.store.load_state(run.execution_id), run.key, run.status_message)

    def _on_failure(self, state: ExecutionState, key: TaskKey, message: str) -> None:
        execution = state.execution
        if state.pipeline.task(key).ignore_failure:
            log.info("execution %s: %s failed and is ignored: %s", execution.id, _describe(key), message)
            self.advance(execution.id)
            return
        if not execution.status.is_active:
            return
        reason = f"task {_describe(key)} failed: {message}"
        # A rollback pipeline's own failures do not chain further rollbacks: that way lies a loop.
        plan = None
        if not execution.rollback:
            plan = rollback.plan_rollback(state.pipeline, key, message, state.scope(), execution.index)
        if plan is None:
            if self.store.transition(execution.id, ExecutionStatus.FAILED, reason):
                self._finished(execution.id)
            return
        self._start_rollback(execution, plan, reason)

    def _start_rollback(self, execution: Execution, plan: rollback.RollbackPlan, reason: str) -> None:
        target = self.store.find_pipeline(execution.project, plan.pipeline)
        if target is None:
            message = f"{reason}; rollback pipeline '{plan.pipeline}' no longer exists"
            if self.store.transition(execution.id, ExecutionStatus.FAILED, message):
                self._finished(execution.id)
            return
        child_input = {**target.pipeline.input, **plan.input}
        child = self.store.start_rollback(execution.id, target, child_input, plan.comments, ROLLING_BACK + reason)
        if child is None:
            return
        log.info("execution %s: %s; rollback execution %s started", execution.id, reason, child.id)
        self.advance(child.id)

    def _complete(self, state: ExecutionState) -> None:
        execution = state.execution
        lenient = state.scope()
        output = resolve(dict(state.pipeline.output), lambda text: _lenient_lookup(lenient.lookup, text))
        assert isinstance(output, dict)
        if self.store.transition(execution.id, ExecutionStatus.COMPLETED, "", output=output):
            self._finished(execution.id)

    def _finished(self, execution_id: str) -> None:
        """After an execution ends: settle the execution it rolled back, and start queued ones."""
        execution = self.store.get_execution(execution_id)
        if execution.rollback_of is not None:
            self._settle_rolled_back(execution)
        if execution.pipeline_id is not None:
            for promoted in self.store.promote_queued(execution.pipeline_id):
                self.advance(promoted)


    def _settle_rolled_back(self, rollback_execution: Execution) -> None:
        parent = self.store.get_execution(str(rollback_execution.rollback_of))
        ended = f"rollback {rollback_execution.pipeline_name} #{rollback_execution.index} {rollback_execution.status}"
        if rollback_execution.status_message:
            ended += f" ({rollback_execution.status_message})"
        message = f"{parent.status_message.removeprefix(ROLLING_BACK)}; {ended}"
        if self.store.transition(parent.id, rollback.parent_outcome(rollback_execution.status), message):
            self._finished(parent.id)


def _lenient_lookup(lookup: Any, text: str) -> object:
    try:
        return lookup(text)
    except Exception:  # an output that names a skipped task reads as empty rather than failing a finished run
        return ""
