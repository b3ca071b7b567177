"""Rollbacks: the automatic one when a task fails, a person's rollback of an ended execution, and the steps a
ROLLING_BACK execution takes as its rollbacks end.

Which rollback pipeline runs, with which input, and what the parent becomes are pure decisions in `rollback.py`.
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator import rollback
from orchestrator.errors import Conflict, InvalidTransition
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, Relation
from orchestrator.pipeline import TaskKey
from orchestrator.redaction import mask_secrets
from orchestrator.schema import now
from orchestrator.status import ExecutionStatus
from orchestrator.steps import Effects, Steps, describe, log, named
from orchestrator.transaction import Transaction


class Rollbacks(Steps):
    """Start rollback executions, and settle the execution they roll back."""

    def _on_failure(self, tx: Transaction, state: ExecutionState, key: TaskKey, message: str, effects: Effects) -> None:
        execution = state.execution
        if state.pipeline.task(key).ignore_failure:
            log.info("execution %s: %s failed and is ignored: %s", execution.id, describe(key), message)
            self._advance(tx, state, effects)
            return
        # A failure that arrives while the execution is paused (its task was already running) still rolls it back.
        if not execution.status.in_progress:
            return
        reason = f"task {describe(key)} failed: {message}"
        # Whether it fails or rolls back, what it started in nested executions stops with it.
        why = f"canceled: {named(execution)} stopped, {reason}"
        self._control_nested(tx, execution, ExecutionStatus.CANCELED, why=why, actor="", effects=effects)
        # A rollback pipeline's own failures do not chain further rollbacks: that way lies a loop.
        plan = None
        variables = self._variables(tx, execution.project)
        if not execution.rollback:
            plan = rollback.plan_rollback(state.pipeline, key, message, state.scope(variables))
        target = None if plan is None else tx.find_pipeline(execution.project, plan.pipeline)
        if plan is None or target is None:
            if plan is not None:
                reason += f"; rollback pipeline '{plan.pipeline}' no longer exists"
            if tx.transition(execution.id, ExecutionStatus.FAILED, reason):
                effects.ended.append(execution.id)
            return
        # A rollback input bound to a secret variable is recorded masked: the rollback pipeline reads the variable.
        child = tx.insert_execution(
            target,
            {**target.pipeline.input, **mask_secrets(plan.input, variables.secrets)},
            plan.comments,
            requested_by=execution.requested_by,
            requested_by_admin=execution.requested_by_admin,
            parent_id=execution.id,
            relation=Relation.ROLLBACK,
        )
        tx.transition(execution.id, ExecutionStatus.ROLLING_BACK, f"rolling back: {reason}", cause=reason)
        log.info("execution %s: %s; rollback execution %s started", execution.id, reason, child.id)
        self._advance(tx, tx.state(child.id, lock=True), effects)

    def roll_back(self, execution_id: str, requested_by: str = "", *, requested_by_admin: bool = False) -> Execution:
        """A person's rollback of an ended execution ("put production back on the last known-good release").

        The rollback pipelines of the stages it deployed run as its children (relation manual_rollback), newest
        stage first and one after the other (`rollback.plan_manual_rollback`, `rollback.next_step`): it goes
        ROLLING_BACK, then ROLLBACK_COMPLETED when all completed, or ROLLBACK_FAILED at the first that did not.
        Conflict (409) unless it is COMPLETED, FAILED or ROLLBACK_FAILED, when nothing it deployed has a
        rollback link, or when a linked rollback pipeline no longer exists.
        """
        effects = Effects()
        actor = requested_by or "a user"
        with self.store.locked(execution_id) as (tx, state):
            execution = state.execution
            if not execution.status.rolls_back_by_hand:
                raise InvalidTransition(
                    f"execution #{execution.index} of '{execution.pipeline_name}' is {execution.status}: only a "
                    "COMPLETED, FAILED or ROLLBACK_FAILED execution can be rolled back by hand"
                )
            variables = self._variables(tx, execution.project)
            plans = rollback.plan_manual_rollback(state.pipeline, state.runs, state.scope(variables), actor)
            targets = _rollback_targets(tx, execution, plans)
            cause = f"manual rollback requested by {actor}: " + ", then ".join(plan.pipeline for plan in plans)
            tx.transition(execution.id, ExecutionStatus.ROLLING_BACK, f"rolling back: {cause}", actor, cause=cause)
            stamp = now()
            children = [
                tx.insert_execution(
                    target,
                    {**target.pipeline.input, **mask_secrets(plan.input, variables.secrets)},
                    plan.comments,
                    requested_by=actor,
                    requested_by_admin=requested_by_admin,
                    parent_id=execution.id,
                    relation=Relation.MANUAL_ROLLBACK,
                    start=False,
                    # Strictly increasing, so the order they run in never depends on the clock's resolution.
                    created_at=stamp + timedelta(microseconds=position),
                )
                for position, (plan, target) in enumerate(zip(plans, targets, strict=True))
            ]
            log.info("execution %s: %s", execution.id, cause)
            self._start_child(tx, children[0].id, f"started by the {cause}", effects)
        self._follow_up(effects)
        return self.store.get_execution(execution_id)

    def settle(self, parent_id: str) -> None:
        """Take the next step of a ROLLING_BACK execution whose rollback ended: start its next manual rollback, or
        settle it; the sweep's way back when the step after that end was lost."""
        effects = Effects()
        with self.store.transaction() as tx:
            self._settle_parent(tx, parent_id, effects)
        self._follow_up(effects)

    def _settle_parent(self, tx: Transaction, parent_id: str, effects: Effects) -> None:
        """The step a ROLLING_BACK execution takes when one of its rollbacks ended (`rollback.next_step`)."""
        parent = tx.execution(parent_id, lock=True)
        if parent.status is not ExecutionStatus.ROLLING_BACK:
            return
        rollbacks = [child for child in tx.children([parent_id]).get(parent_id, []) if child.relation.rolls_back]
        step = rollback.next_step(rollbacks)
        if step.start is not None:
            self._start_child(tx, step.start, "the rollback before it completed", effects)
            return
        if step.outcome is None:
            return
        for child in step.not_started:
            if tx.transition(child.id, ExecutionStatus.CANCELED, "not run: a rollback before it did not complete"):
                effects.ended.append(child.id)
        message = "; ".join(part for part in (parent.cause, step.message) if part)
        if tx.transition(parent.id, step.outcome, message):
            effects.ended.append(parent.id)

    def _start_child(self, tx: Transaction, child_id: str, message: str, effects: Effects) -> None:
        """Start a NOT_STARTED child execution and queue its first tasks."""
        if tx.transition(child_id, ExecutionStatus.RUNNING, message):
            self._advance(tx, tx.state(child_id, lock=True), effects)


def _rollback_targets(
    tx: Transaction, execution: Execution, plans: list[rollback.RollbackPlan]
) -> list[PipelineRecord]:
    """The saved rollback pipelines of a manual rollback's plans; Conflict when there are none or one is gone."""
    if not plans:
        raise Conflict(
            f"execution #{execution.index} of '{execution.pipeline_name}' has nothing to roll back: no stage it "
            "deployed (ran a task of) has a rollback link"
        )
    targets = [(plan.pipeline, tx.find_pipeline(execution.project, plan.pipeline)) for plan in plans]
    missing = sorted({name for name, target in targets if target is None})
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise Conflict(f"cannot roll back: rollback pipeline {names} no longer exists in project '{execution.project}'")
    return [target for _, target in targets if target is not None]
