"""Task runs held for a person's answer: UserOperation tasks (approvals) and a non-admin's tasks that use something
restricted (held for an admin), and the answer (approved, rejected, expired, superseded) that moves them on.

What a user operation asks, records and allows lives in `useroperations.py`.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator import useroperations
from orchestrator.errors import Conflict
from orchestrator.execution import ExecutionState
from orchestrator.inputs import BoundTask
from orchestrator.outbox import Dispatch, Schedule
from orchestrator.pipeline import Pipeline, TaskKey
from orchestrator.schema import now
from orchestrator.status import ExecutionStatus
from orchestrator.steps import Effects, Steps, describe, log
from orchestrator.tasktypes import USER_OPERATION
from orchestrator.transaction import Transaction
from orchestrator.useroperations import Approval, OperationKind, OperationStatus, UserOperation


class Holds(Steps):
    """Hold task runs that wait for a person, and move them on when answered."""

    def _hold_asked(
        self,
        tx: Transaction,
        state: ExecutionState,
        recorded: list[tuple[TaskKey, BoundTask]],
        *,
        sealed: Mapping[TaskKey, str],
        asked: Mapping[TaskKey, Approval],
        reads: Mapping[TaskKey, frozenset[str]],
        effects: Effects,
    ) -> list[tuple[TaskKey, BoundTask]]:
        """Hold the UserOperation tasks about to start, and a non-admin's tasks that use something restricted;
        what is left to queue. A UserOperation task already waits for a person, so it is never held twice."""
        execution = state.execution
        others = [(key, task) for key, task in recorded if key not in asked]
        held = {key: approval.waiting for key, approval in asked.items()}
        if not execution.requested_by_admin:
            held |= _restrictions(tx, execution.project, others, reads)
        if held:
            self._hold(tx, state, [(key, task, held[key]) for key, task in recorded if key in held], sealed, asked)
            for key, approval in asked.items():
                if approval.cancel_previous and execution.pipeline_id is not None:
                    why = f"canceled: execution #{execution.index} of the pipeline asked for the same approval"
                    previous = useroperations.pending_before(tx.conn, execution.pipeline_id, key, execution.id)
                    effects.superseded += [(operation, why) for operation in previous]
        return [(key, task) for key, task in recorded if key not in held]

    def _hold(
        self,
        tx: Transaction,
        state: ExecutionState,
        held: list[tuple[TaskKey, BoundTask, str]],
        sealed: Mapping[TaskKey, str],
        asked: Mapping[TaskKey, Approval],
    ) -> None:
        """Hold runs that need a person's answer, each with an ACTIVE user operation (an APPROVAL for the tasks
        `asked`, else RESTRICTED, for an admin); the execution goes WAITING."""
        execution = state.execution
        for run in tx.hold_task_runs(execution.id, held, sealed=sealed):
            approval = asked.get(run.key)
            kind = OperationKind.RESTRICTED if approval is None else OperationKind.APPROVAL
            useroperations.open_operation(
                tx.conn,
                run,
                kind,
                summary=run.status_message if approval is None else approval.summary or approval.waiting,
                requested_by=execution.requested_by,
                approval=approval,
            )
        key, _, summary = held[0]
        more = f" (and {len(held) - 1} more task(s))" if len(held) > 1 else ""
        if execution.status is ExecutionStatus.RUNNING:
            tx.transition(execution.id, ExecutionStatus.WAITING, f"task {describe(key)} is {summary}{more}")

    def respond(self, operation: UserOperation, approve: bool, actor: str, comments: str = "") -> UserOperation:
        """Answer an ACTIVE user operation: approved, a RESTRICTED one's run is queued and sent, an APPROVAL's
        completes with the answer as its output and the execution goes on; rejected, it fails (and its stage's
        rollback runs as for any failure). Conflict (409) when it was answered or canceled already."""
        new = OperationStatus.APPROVED if approve else OperationStatus.REJECTED
        verdict = f"{new.value.lower()} by {actor}" + (f": {comments}" if comments else "")
        return self._close(operation, new, verdict, actor, comments=comments, responder=actor)

    def expire(self, operation: UserOperation, actor: str) -> UserOperation | None:
        """Expire an ACTIVE approval whose time ran out: its task fails, so its stage rolls back; None when it was
        answered meanwhile."""
        try:
            return self._close(operation, OperationStatus.EXPIRED, "", actor)
        except Conflict:
            return None

    def _close(
        self,
        operation: UserOperation,
        new: OperationStatus,
        verdict: str,
        actor: str,
        *,
        comments: str = "",
        responder: str = "",
    ) -> UserOperation:
        """Settle an ACTIVE user operation as `new` and move its run and execution on, in one step; `verdict` is
        the run's message (an expiry's names how long it waited)."""
        effects = Effects()
        with self.store.locked(operation.execution_id) as (tx, state):
            answered = useroperations.settle(tx.conn, operation, new, actor=responder, comments=comments)
            if new is OperationStatus.EXPIRED:
                verdict = useroperations.expired_message(tx.task_run(answered.task_run_id).input or {})
            execution = state.execution
            key = (answered.stage, answered.task)
            # The execution waits while any of its runs waits for an answer (Code Stream's WAITING).
            if execution.status is ExecutionStatus.WAITING and not useroperations.active_count(tx.conn, execution.id):
                tx.transition(execution.id, ExecutionStatus.RUNNING, f"task {describe(key)} {verdict}", actor)
            if new is not OperationStatus.APPROVED:
                if tx.refuse_task_run(answered.task_run_id, verdict, actor):
                    self._on_failure(tx, tx.state(execution.id), key, verdict, effects)
            elif answered.kind is OperationKind.APPROVAL:
                if tx.complete_held_task_run(answered.task_run_id, verdict, answered.output(), actor):
                    self._advance(tx, tx.state(execution.id), effects)
            else:
                schedule = Schedule.plan(now(), 0.0, self.horizon)
                if (run := tx.release_task_run(answered.task_run_id, verdict, schedule, actor)) is not None:
                    effects.dispatch.append(Dispatch.of(run, execution))
        self._follow_up(effects)
        return answered

    def _supersede(self, operation: UserOperation, why: str) -> None:
        """Cancel another execution's pending approval a newer one replaced: its task fails, as a rejection's."""
        try:
            self._close(operation, OperationStatus.CANCELED, why, "")
        except Conflict:
            log.info("user operation %s was answered before a newer execution superseded it", operation.id)


def approvals(
    pipeline: Pipeline, bound: list[tuple[TaskKey, BoundTask]]
) -> tuple[dict[TaskKey, Approval], list[tuple[TaskKey, str]]]:
    """What each UserOperation task about to start asks, and those whose bound input asks nothing sensible."""
    asked, unasked = {}, []
    for key, task in bound:
        if pipeline.task(key).type != USER_OPERATION:
            continue
        try:
            asked[key] = useroperations.approval_of(task.input)
        except ValueError as error:
            unasked.append((key, f"its input could not be bound: {error}"))
    return asked, unasked


def _restrictions(
    tx: Transaction, project: str, bound: list[tuple[TaskKey, BoundTask]], reads: Mapping[TaskKey, frozenset[str]]
) -> dict[TaskKey, str]:
    """The tasks of a non-admin's run that must wait for an admin, with why: they use a RESTRICTED variable or a
    restricted endpoint. Nothing is read when no task reads a variable or has an endpoint."""
    variables = useroperations.restricted_variables(tx.conn, project) if any(reads.values()) else frozenset()
    endpoints = useroperations.restricted_endpoints(tx.conn, [i for _, task in bound for i in task.endpoints.values()])
    held = {}
    for key, task in bound:
        why = useroperations.restriction(
            reads.get(key, frozenset()) & variables, [endpoints[i] for i in task.endpoints.values() if i in endpoints]
        )
        if why is not None:
            held[key] = why
    return held
