"""Executions within executions: a person's control of one (cancel, pause, resume) and how it reaches the nested
executions it started, and those nested executions themselves, started and settled for their Pipeline tasks.

A step locks a parent before its children (see `engine.py`); what a Pipeline task asks and what its run becomes
when its child ends are pure decisions in `nesting.py`.
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator import nesting, useroperations
from orchestrator.errors import InputInvalid, InvalidTransition
from orchestrator.execution import Execution, ExecutionState, Relation
from orchestrator.inputs import BoundTask, bind_input
from orchestrator.outbox import Dispatch
from orchestrator.outbox import countdown as seconds_until
from orchestrator.pipeline import TaskKey
from orchestrator.schema import now
from orchestrator.status import EXECUTION_ALLOWED, ExecutionStatus, RunStatus, check_execution
from orchestrator.steps import Effects, Steps, describe, log, named
from orchestrator.tasktypes import PIPELINE
from orchestrator.transaction import Transaction


class Control(Steps):
    """Cancel, pause and resume an execution, and with it its nested executions."""

    def cancel(self, execution_id: str, requested_by: str = "") -> Execution:
        """Cancel an execution: nothing more of it starts; tasks already running end on their own.

        Raises InvalidTransition (a 409) when the execution is past canceling, e.g. already ended or rolling back.
        """
        effects = Effects()
        actor = requested_by or "a user"
        with self.store.locked(execution_id) as (tx, state):
            check_execution(state.execution.status, ExecutionStatus.CANCELED)
            self._control(
                tx,
                state.execution,
                ExecutionStatus.CANCELED,
                message=f"canceled by {actor}",
                actor=actor,
                effects=effects,
            )
        self._follow_up(effects)
        return self.store.get_execution(execution_id)

    def pause(self, execution_id: str, requested_by: str = "") -> Execution:
        """Pause an execution: nothing new of it starts, and its queued runs wait; tasks already running finish and
        their outcome is recorded (a failure still rolls it back).

        Raises InvalidTransition (a 409) unless it is RUNNING or WAITING.
        """
        effects = Effects()
        actor = requested_by or "a user"
        with self.store.locked(execution_id) as (tx, state):
            check_execution(state.execution.status, ExecutionStatus.PAUSED)
            self._control(
                tx, state.execution, ExecutionStatus.PAUSED, message=f"paused by {actor}", actor=actor, effects=effects
            )
        self._follow_up(effects)
        return self.store.get_execution(execution_id)

    def resume(self, execution_id: str, requested_by: str = "") -> Execution:
        """Resume a paused execution: RUNNING again (WAITING while a user operation of it is still ACTIVE), what
        became ready starts, and its queued runs are sent again (their messages were dropped while it was paused).

        Raises InvalidTransition (a 409) unless it is PAUSED.
        """
        effects = Effects()
        actor = requested_by or "a user"
        with self.store.locked(execution_id) as (tx, state):
            status = state.execution.status
            if status is not ExecutionStatus.PAUSED:
                raise InvalidTransition(f"only a PAUSED execution can be resumed; this one is {status}")
            self._resume(tx, state.execution, f"resumed by {actor}", actor, effects)
        self._follow_up(effects)
        return self.store.get_execution(execution_id)

    def _resume(self, tx: Transaction, execution: Execution, message: str, actor: str, effects: Effects) -> None:
        """Resume a paused execution and its paused nested ones, in this step."""
        waiting = useroperations.active_count(tx.conn, execution.id) > 0
        new = ExecutionStatus.WAITING if waiting else ExecutionStatus.RUNNING
        if not tx.transition(execution.id, new, message, actor):
            return
        stamp = now()
        held = tx.resend_queued(execution.id, stamp + timedelta(seconds=self.horizon), stamp)
        effects.dispatch += [Dispatch.of(run, execution, seconds_until(run.dispatch_after, stamp)) for run in held]
        self._advance(tx, tx.state(execution.id), effects)
        for child_id in tx.nested_in(execution.id):
            child = tx.execution(child_id, lock=True)
            if child.status is ExecutionStatus.PAUSED:
                self._resume(tx, child, f"resumed with {named(execution)}", actor, effects)

    def _control(
        self, tx: Transaction, execution: Execution, new: ExecutionStatus, *, message: str, actor: str, effects: Effects
    ) -> None:
        """Cancel or pause an execution, and with it its nested executions that allow it (a child still queued
        behind its pipeline's concurrency cannot be paused, one rolling back cannot be canceled), in this step."""
        if not tx.transition(execution.id, new, message, actor):
            return
        if new.is_terminal:
            effects.ended.append(execution.id)
        why = f"{'canceled' if new is ExecutionStatus.CANCELED else 'paused'} with {named(execution)}"
        self._control_nested(tx, execution, new, why=why, actor=actor, effects=effects)

    def _control_nested(
        self, tx: Transaction, execution: Execution, new: ExecutionStatus, *, why: str, actor: str, effects: Effects
    ) -> None:
        for child_id in tx.nested_in(execution.id):
            child = tx.execution(child_id, lock=True)
            if new in EXECUTION_ALLOWED[child.status]:
                self._control(tx, child, new, message=why, actor=actor, effects=effects)


class Nesting(Steps):
    """The nested execution each Pipeline task starts, and its task run settled when that execution ends."""

    def _start_nested(
        self, tx: Transaction, state: ExecutionState, recorded: list[tuple[TaskKey, BoundTask]], effects: Effects
    ) -> list[tuple[TaskKey, BoundTask]] | None:
        """Start the nested execution of each Pipeline task about to start (its run waits for it, see `nesting.py`);
        what is left to queue, or None when one could not start: its task failed, and that failure was handled."""
        others = []
        for key, task in recorded:
            if state.pipeline.task(key).type != PIPELINE:
                others.append((key, task))
                continue
            refused = self._nest(tx, state.execution, key, task, effects)
            if refused is not None:
                tx.settle_task_runs(state.execution.id, [(key, refused)], RunStatus.FAILED)
                self._on_failure(tx, tx.state(state.execution.id), key, refused, effects)
                return None
        return others

    def _nest(
        self, tx: Transaction, execution: Execution, key: TaskKey, task: BoundTask, effects: Effects
    ) -> str | None:
        """Insert and start the child execution a Pipeline task asks for, its run waiting for it; why it cannot
        start, if it cannot. Its input is the task's as recorded: a secret in it reaches the child masked."""
        try:
            asked = nesting.asked_of(task.input)
        except ValueError as error:
            return f"its input could not be bound: {error}"
        too_deep = nesting.too_deep(tx.nesting_depth(execution) + 1)
        target = tx.find_pipeline(execution.project, asked.pipeline)
        if too_deep is not None or target is None or not target.pipeline.enabled:
            return too_deep or nesting.unavailable(asked.pipeline, execution.project, exists=target is not None)
        try:
            values = bind_input(target.pipeline, asked.input)
        except InputInvalid as error:
            return nesting.input_refused(asked.pipeline, error)
        child = tx.insert_execution(
            target,
            values,
            f"nested in {named(execution)} by task {describe(key)}",
            requested_by=execution.requested_by,
            requested_by_admin=execution.requested_by_admin,
            parent_id=execution.id,
            relation=Relation.NESTED,
        )
        message, output = nesting.waiting(child)
        tx.wait_for_child(execution.id, key, task, message, output)
        log.info("execution %s: task %s started nested execution %s", execution.id, describe(key), child.id)
        if child.status is ExecutionStatus.RUNNING:
            self._advance(tx, tx.state(child.id, lock=True), effects)
        return None

    def _settle_nested(self, tx: Transaction, child: Execution, effects: Effects) -> None:
        """A nested execution ended: the Pipeline task that waits for it completes with its output, or fails naming
        it and how it ended (so the parent's rollback runs)."""
        if child.parent_id is None:
            return  # its parent was deleted
        tx.execution(child.parent_id, lock=True)
        run = tx.waiting_for(child.parent_id, child.id)
        if run is None:
            return  # settled already, or the parent stopped and canceled it
        completed, message, output = nesting.ended(child)
        if completed:
            if tx.complete_held_task_run(run.id, message, output):
                self._advance(tx, tx.state(child.parent_id), effects)
        elif tx.fail_held_task_run(run.id, message, output):
            self._on_failure(tx, tx.state(child.parent_id), run.key, message, effects)
