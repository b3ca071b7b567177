"""The execution engine: starts executions, advances them as tasks finish, and turns failures into rollbacks.

Decisions come from the pure planner and rollback policy. Each step of an execution is one database
transaction that holds the execution's row lock, so steps of one execution run one after the other in
any number of processes. What a step decides to send (task runs for workers) and to settle (executions
that ended) is collected as `Effects` and carried out only after the transaction commits, so a worker
never receives a task run it cannot yet see.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from orchestrator import expressions, planner, rollback
from orchestrator.bindings import Scope, resolve
from orchestrator.errors import InputInvalid, PipelineDisabled, Problem, RollwayError
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, TaskRun
from orchestrator.inputs import BoundTask, bind_task
from orchestrator.pipeline import Pipeline, TaskKey
from orchestrator.status import ExecutionStatus, RunStatus, check_execution
from orchestrator.store import Store
from orchestrator.transaction import Transaction

log = logging.getLogger(__name__)

ROLLING_BACK = "rolling back: "


class Dispatcher(Protocol):
    """Sends a queued task run to a worker."""

    def dispatch(self, run: TaskRun, countdown: float = 0.0) -> None:
        """Have a worker run `run` for its current attempt, after `countdown` seconds."""


@dataclass
class Effects:
    """What a committed step leaves to do: task runs to dispatch, and executions that just ended."""

    dispatch: list[TaskRun] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)


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
        if values.get(name) is None or str(values[name]).strip() == ""
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
        effects = Effects()
        with self.store.transaction() as tx:
            execution = tx.insert_execution(record, values, comments, requested_by=requested_by)
            if execution.status is ExecutionStatus.RUNNING:
                self._advance(tx, tx.state(execution.id, lock=True), effects)
        self._follow_up(effects)
        return execution

    def advance(self, execution_id: str) -> None:
        """Start whatever is ready in an execution; complete it when nothing is left to run."""
        effects = Effects()
        with self.store.locked(execution_id) as (tx, state):
            self._advance(tx, state, effects)
        self._follow_up(effects)

    def cancel(self, execution_id: str, requested_by: str = "") -> Execution:
        """Cancel an execution: nothing more of it starts; tasks already running end on their own.

        Raises InvalidTransition (a 409) when the execution is past canceling, e.g. already ended or rolling back.
        """
        effects = Effects()
        with self.store.locked(execution_id) as (tx, state):
            check_execution(state.execution.status, ExecutionStatus.CANCELED)
            tx.transition(execution_id, ExecutionStatus.CANCELED, f"canceled by {requested_by or 'a user'}")
            tx.cancel_queued_task_runs(execution_id, "not run: the execution was canceled")
            effects.ended.append(execution_id)
        self._follow_up(effects)
        return self.store.get_execution(execution_id)

    def task_succeeded(self, run: TaskRun, output: Mapping[str, Any]) -> None:
        """Record a task run's output and move its execution on, in one step."""
        effects = Effects()
        with self.store.transaction() as tx:
            # Finish first, lock second: a sibling finishing at the same moment then waits for this step and
            # sees this run completed, so one of the two always starts what comes next.
            if tx.finish_task_run(run.id, RunStatus.COMPLETED, "", output):
                self._advance(tx, tx.state(run.execution_id, lock=True), effects)
        self._follow_up(effects)

    def task_failed(self, task_run_id: str) -> None:
        """Handle a failed task run: go on (ignoreFailure), roll back (a link covers it) or fail the execution."""
        effects = Effects()
        with self.store.transaction() as tx:
            run = tx.task_run(task_run_id)
            if not run.status.is_terminal:
                # The worker died or lost its database before it could record why.
                tx.finish_task_run(run.id, RunStatus.FAILED, "the worker stopped before recording a result")
            state = tx.state(run.execution_id, lock=True)
            summary = state.runs[run.key]
            if summary.status is RunStatus.FAILED:
                self._on_failure(tx, state, run.key, summary.status_message, effects)
        self._follow_up(effects)

    # -- steps inside a transaction

    def _advance(self, tx: Transaction, state: ExecutionState, effects: Effects) -> None:
        execution = state.execution
        if not execution.status.is_active:
            return
        scope = state.scope()
        step = planner.plan(state.pipeline, state.statuses(), lambda text: expressions.check(text, scope.lookup))
        tx.settle_task_runs(execution.id, step.skip, RunStatus.SKIPPED)
        bound, unbound = _bind(tx, state, step.start, scope)
        failed = [*step.fail, *unbound]
        if failed:
            tx.settle_task_runs(execution.id, failed, RunStatus.FAILED)
            # A failure that stops the run decides; ignored ones only let it go on.
            stopping = [item for item in failed if not state.pipeline.task(item[0]).ignore_failure]
            key, message = (stopping or failed)[0]
            self._on_failure(tx, tx.state(execution.id), key, message, effects)
            return
        effects.dispatch += tx.queue_task_runs(execution.id, bound)
        if step.done:
            # An output naming a skipped task reads as empty rather than failing a finished run.
            output = resolve(dict(state.pipeline.output), replace(scope, lenient=True).lookup)
            if tx.transition(execution.id, ExecutionStatus.COMPLETED, "", output=output):
                effects.ended.append(execution.id)

    def _on_failure(self, tx: Transaction, state: ExecutionState, key: TaskKey, message: str, effects: Effects) -> None:
        execution = state.execution
        if state.pipeline.task(key).ignore_failure:
            log.info("execution %s: %s failed and is ignored: %s", execution.id, _describe(key), message)
            self._advance(tx, state, effects)
            return
        if not execution.status.is_active:
            return
        reason = f"task {_describe(key)} failed: {message}"
        # A rollback pipeline's own failures do not chain further rollbacks: that way lies a loop.
        plan = None
        if not execution.rollback:
            plan = rollback.plan_rollback(state.pipeline, key, message, state.scope())
        target = None if plan is None else tx.find_pipeline(execution.project, plan.pipeline)
        if plan is None or target is None:
            if plan is not None:
                reason += f"; rollback pipeline '{plan.pipeline}' no longer exists"
            if tx.transition(execution.id, ExecutionStatus.FAILED, reason):
                effects.ended.append(execution.id)
            return
        child = tx.insert_execution(
            target,
            {**target.pipeline.input, **plan.input},
            plan.comments,
            requested_by=execution.requested_by,
            rollback_of=execution.id,
        )
        tx.transition(execution.id, ExecutionStatus.ROLLING_BACK, ROLLING_BACK + reason, rollback_execution_id=child.id)
        log.info("execution %s: %s; rollback execution %s started", execution.id, reason, child.id)
        self._advance(tx, tx.state(child.id, lock=True), effects)

    # -- after a step has committed

    def _follow_up(self, effects: Effects) -> None:
        for run in effects.dispatch:
            self.dispatcher.dispatch(run)
        for execution_id in effects.ended:
            self._finished(execution_id)

    def _finished(self, execution_id: str) -> None:
        """After an execution ends: settle the execution it rolled back, and start queued ones."""
        effects = Effects()
        with self.store.transaction() as tx:
            execution = tx.execution(execution_id)
            if execution.rollback_of is not None:
                self._settle_rolled_back(tx, execution, effects)
            if execution.pipeline_id is not None:
                for promoted in tx.promote_queued(execution.pipeline_id):
                    self._advance(tx, tx.state(promoted, lock=True), effects)
        self._follow_up(effects)

    def _settle_rolled_back(self, tx: Transaction, rollback_execution: Execution, effects: Effects) -> None:
        parent = tx.execution(str(rollback_execution.rollback_of), lock=True)
        ended = f"rollback {rollback_execution.pipeline_name} #{rollback_execution.index} {rollback_execution.status}"
        if rollback_execution.status_message:
            ended += f" ({rollback_execution.status_message})"
        message = f"{parent.status_message.removeprefix(ROLLING_BACK)}; {ended}"
        if tx.transition(parent.id, rollback.parent_outcome(rollback_execution.status), message):
            effects.ended.append(parent.id)


def _bind(
    tx: Transaction, state: ExecutionState, keys: Iterable[TaskKey], scope: Scope
) -> tuple[list[tuple[TaskKey, BoundTask]], list[tuple[TaskKey, str]]]:
    """What each task about to be queued is given, and the tasks whose bindings or endpoints cannot be resolved."""
    bound, unbound = [], []
    for key in keys:
        task = state.pipeline.task(key)
        try:
            given = bind_task(task, scope)
        except RollwayError as error:
            unbound.append((key, f"its input could not be bound: {error.message}"))
            continue
        ids = {role: tx.endpoint_id(state.execution.project, name) for role, name in task.endpoints.items()}
        missing = [f"'{task.endpoints[role]}' ({role})" for role, found in ids.items() if found is None]
        if missing:
            unbound.append(
                (key, f"endpoint {', '.join(missing)} does not exist in project '{state.execution.project}'")
            )
            continue
        bound.append((key, replace(given, endpoints={role: str(found) for role, found in ids.items()})))
    return bound, unbound
