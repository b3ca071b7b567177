"""The execution engine: starts executions, advances them as tasks finish, and turns failures into rollbacks.

Decisions come from the pure planner and rollback policy. Each step of an execution is one database
transaction that holds the execution's row lock, so steps of one execution run one after the other in
any number of processes. What a step decides to send (task runs for workers) is recorded in the same
transaction (the outbox, see `outbox.py`) and sent only after it commits, so a worker never receives a task
run it cannot yet see, and a send that never happens is found by the sweep. Executions that ended are
settled after the commit too (`finished`), and again by the sweep if that follow-up was lost.

A step that locks more than one execution locks a parent before its children (a rollback's, or the nested
executions of Pipeline tasks, see `nesting.py`): cancel, pause and resume reach a parent's nested executions in
the same step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from orchestrator import defaults, expressions, nesting, planner, readiness, rollback, tasktypes, useroperations
from orchestrator.bindings import Scope, resolve
from orchestrator.errors import (
    Conflict,
    InputInvalid,
    InvalidTransition,
    PipelineDisabled,
    Problem,
    RollbackNotReady,
    RollwayError,
)
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, Relation, TaskRun
from orchestrator.inputs import BoundTask, bind_task, input_problems
from orchestrator.outbox import Dispatch, Schedule
from orchestrator.outbox import countdown as seconds_until
from orchestrator.outcome import Failed, Lost, Outcome, Succeeded, Waiting
from orchestrator.pipeline import Pipeline, TaskKey
from orchestrator.preflight import Preflight, Prober
from orchestrator.redaction import Secrets, mask_secrets, redact_message
from orchestrator.schema import now
from orchestrator.sealing import conceal
from orchestrator.status import EXECUTION_ALLOWED, ExecutionStatus, RunStatus, check_execution
from orchestrator.store import Store
from orchestrator.tasktypes import PIPELINE, USER_OPERATION
from orchestrator.transaction import Transaction
from orchestrator.useroperations import Approval, OperationKind, OperationStatus, UserOperation, VariableReads
from orchestrator.variables import ProjectVariables, project_values

log = logging.getLogger(__name__)

# Where a run's executor state counts how often its attempts were lost with their workers.
LOSSES_KEY = "rollway.losses"


class Dispatcher(Protocol):
    """Sends a queued task run to a worker."""

    def dispatch(self, item: Dispatch) -> None:
        """Have a worker run attempt `item.attempt` of a task run, after `item.countdown` seconds.

        Raises whatever the broker raises when the message cannot be handed over: the relay then leaves the
        run to the sweep.
        """

    def notify(self, notice_id: str) -> None:
        """Have a worker send a notification (see `notices.py`); raises as `dispatch` does."""


@dataclass
class Effects:
    """What a committed step leaves to do: messages to send, executions that just ended, and other executions'
    approvals a newer one superseded (`cancelPreviousPendingUserOp`), with why."""

    dispatch: list[Dispatch] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    superseded: list[tuple[UserOperation, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Started:
    """A triggered execution, and the reasons its rollback could not run that `force` overrode (empty: none)."""

    execution: Execution
    overridden: list[Problem] = field(default_factory=list)


def bind_input(pipeline: Pipeline, given: Mapping[str, Any]) -> dict[str, Any]:
    """An execution's input: the pipeline's defaults overlaid with what was given.

    Raises InputInvalid listing every unknown name, every mandatory input left empty and every value too deep.
    """
    problems = [
        Problem(f"input.{name}", f"pipeline '{pipeline.name}' has no input named '{name}'")
        for name in given
        if name not in pipeline.input
    ]
    problems += input_problems(given)
    values = {**pipeline.input, **{name: value for name, value in given.items() if name in pipeline.input}}
    # Only text can be blank (and a value nested too deeply could not even be turned into text).
    problems += [
        Problem(f"input.{name}", f"is mandatory: {pipeline.input_meta[name].description or 'give a value'}")
        for name in pipeline.mandatory_inputs()
        if values.get(name) is None or (isinstance(values[name], str) and not values[name].strip())
    ]
    if problems:
        raise InputInvalid(f"the input of pipeline '{pipeline.name}' has {len(problems)} problem(s)", problems)
    return values


def _describe(key: TaskKey) -> str:
    return f"{key[0]}.{key[1]}"


class Engine:
    """Moves executions forward.

    `horizon` is the sweep interval: a wait up to that long goes to the broker as a countdown at once, a longer
    one stays in the database until the sweep before it is due (see `outbox.Schedule`).
    """

    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        horizon: float = defaults.SWEEP_SECONDS,
        prober: Prober | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.horizon = horizon
        # Whether a release's rollback could run, checked on every trigger; `prober` asks endpoints (see
        # `preflight.py`): without one, an endpoint the sweep has not probed lately refuses the release.
        self.preflight = Preflight(store, prober)
        store.on_notices = self.notify

    def notify(self, notice_ids: Sequence[str]) -> None:
        """Hand the notifications a committed step recorded to workers; raises what the broker raises, and the
        sweep sends the rest (they are never inside a step: a slow receiver cannot hold one up)."""
        for notice_id in notice_ids:
            self.dispatcher.notify(notice_id)

    def trigger(
        self,
        record: PipelineRecord,
        given: Mapping[str, Any],
        comments: str = "",
        requested_by: str = "",
        *,
        requested_by_admin: bool = False,
        alongside: Callable[[Transaction, Execution], None] | None = None,
        force: bool = False,
    ) -> Execution:
        """Start an execution of a saved pipeline (or queue it behind the running ones); see `start`."""
        return self.start(
            record,
            given,
            comments,
            requested_by,
            requested_by_admin=requested_by_admin,
            alongside=alongside,
            force=force,
        ).execution

    def start(
        self,
        record: PipelineRecord,
        given: Mapping[str, Any],
        comments: str = "",
        requested_by: str = "",
        *,
        requested_by_admin: bool = False,
        alongside: Callable[[Transaction, Execution], None] | None = None,
        force: bool = False,
    ) -> Started:
        """Start an execution of a saved pipeline (or queue it behind the running ones), and say what it overrode.

        A release whose rollback could not run (`readiness.py`) is refused with RollbackNotReady, listing why,
        unless `force`: then it starts, and its first event records who forced it past which reasons.
        Once the execution is committed the trigger has succeeded: if the broker cannot take its first tasks
        now, the sweep sends them when it can. `alongside` writes something with the new execution in the same
        transaction (the webhook delivery that started it): if it raises, the execution is not saved either.
        `requested_by_admin` says the requester is an admin of the project: its tasks never wait for one.
        """
        if not record.pipeline.enabled:
            raise PipelineDisabled(f"pipeline '{record.name}' is disabled; enable it before running it")
        values = bind_input(record.pipeline, given)
        # Checked before anything is written: a refused release leaves no execution (nor a webhook delivery).
        reasons = self.preflight.check(record.pipeline)
        if reasons and not force:
            raise RollbackNotReady(readiness.refusal(record.pipeline, reasons), reasons)
        note = readiness.override_note(reasons, requested_by) if reasons else ""
        effects = Effects()
        with self.store.transaction() as tx:
            execution = tx.insert_execution(
                record, values, comments, requested_by=requested_by, requested_by_admin=requested_by_admin, note=note
            )
            if alongside is not None:
                alongside(tx, execution)
            if execution.status is ExecutionStatus.RUNNING:
                self._advance(tx, tx.state(execution.id, lock=True), effects)
        if reasons:
            log.warning("execution %s of %s: %s", execution.id, record.name, note)
        try:
            self._follow_up(effects)
        except SQLAlchemyError as error:
            # Saved is saved: answering an error now would have the caller trigger it twice. The sweep settles
            # what this follow-up could not.
            log.warning("execution %s: its follow-up is left to the sweep: %s", execution.id, error)
        return Started(execution, reasons)

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
        effects.dispatch += [
            Dispatch(run.id, run.attempt, run.type, execution.rollback, seconds_until(run.dispatch_after, stamp))
            for run in held
        ]
        self._advance(tx, tx.state(execution.id), effects)
        for child_id in tx.nested_in(execution.id):
            child = tx.execution(child_id, lock=True)
            if child.status is ExecutionStatus.PAUSED:
                self._resume(tx, child, f"resumed with {_named(execution)}", actor, effects)

    def _control(
        self, tx: Transaction, execution: Execution, new: ExecutionStatus, *, message: str, actor: str, effects: Effects
    ) -> None:
        """Cancel or pause an execution, and with it its nested executions that allow it (a child still queued
        behind its pipeline's concurrency cannot be paused, one rolling back cannot be canceled), in this step."""
        if not tx.transition(execution.id, new, message, actor):
            return
        if new.is_terminal:
            effects.ended.append(execution.id)
        why = f"{'canceled' if new is ExecutionStatus.CANCELED else 'paused'} with {_named(execution)}"
        self._control_nested(tx, execution, new, why=why, actor=actor, effects=effects)

    def _control_nested(
        self, tx: Transaction, execution: Execution, new: ExecutionStatus, *, why: str, actor: str, effects: Effects
    ) -> None:
        for child_id in tx.nested_in(execution.id):
            child = tx.execution(child_id, lock=True)
            if new in EXECUTION_ALLOWED[child.status]:
                self._control(tx, child, new, message=why, actor=actor, effects=effects)

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

    def task_finished(self, run: TaskRun, outcome: Outcome, actor: str = "") -> None:
        """Record how an attempt at a task run ended and move its execution on, in one step.

        The one entry point for every outcome: succeeded (what comes next starts), waiting (the run goes back
        to QUEUED, due after its countdown), failed (ignoreFailure, a rollback, or the execution fails) and lost
        (its worker's lease expired: a step that is safe to repeat runs again as a new attempt, one that is not
        fails, so its rollback runs). An outcome for an attempt that is no longer running changes nothing.
        """
        effects = Effects()
        with self.store.transaction() as tx:
            self._record(tx, run, outcome, actor, effects)
        self._follow_up(effects)

    # -- steps inside a transaction

    def _record(self, tx: Transaction, run: TaskRun, outcome: Outcome, actor: str, effects: Effects) -> None:
        if isinstance(outcome, Succeeded):
            # Finish first, lock second: a sibling finishing at the same moment then waits for this step and
            # sees this run completed, so one of the two always starts what comes next.
            if tx.finish_task_run(run, RunStatus.COMPLETED, "", outcome.output, actor=actor):
                self._advance(tx, tx.state(run.execution_id, lock=True), effects)
        elif isinstance(outcome, Waiting):
            self._again(
                tx, run, outcome.state, outcome.message, countdown=outcome.countdown, actor=actor, effects=effects
            )
        elif isinstance(outcome, Failed):
            if tx.finish_task_run(run, RunStatus.FAILED, outcome.message, outcome.output, actor=actor):
                self._on_failure(tx, tx.state(run.execution_id, lock=True), run.key, outcome.message, effects)
        else:
            self._lost(tx, run, outcome, actor, effects)

    def _again(
        self,
        tx: Transaction,
        run: TaskRun,
        state: Mapping[str, Any],
        message: str,
        *,
        countdown: float,
        actor: str,
        effects: Effects,
        lost: bool = False,
    ) -> None:
        execution = tx.execution(run.execution_id)
        schedule = Schedule.plan(now(), countdown, self.horizon)
        if not execution.status.runs_tasks:
            # Paused: no worker could claim it now; the resume (or the sweep after it) sends it.
            schedule = replace(schedule, sent=None)
        again = tx.requeue_task_run(run, state, message, schedule, actor=actor, lost=lost)
        if again is not None and schedule.sent is not None:
            effects.dispatch.append(Dispatch(again.id, again.attempt, again.type, execution.rollback, countdown))

    def _lost(self, tx: Transaction, run: TaskRun, lost: Lost, actor: str, effects: Effects) -> None:
        losses = int(run.state.get(LOSSES_KEY) or 0) + 1
        where = f"attempt {run.attempt} was lost with its worker ({lost.worker or 'unknown'})"
        if tasktypes.safe_to_repeat(run.type, run.input or {}) and losses < defaults.MAX_LOSSES:
            message = f"{where}; running it again as attempt {run.attempt + 1}"
            state = {**run.state, LOSSES_KEY: losses}
            self._again(tx, run, state, message, countdown=0.0, actor=actor, effects=effects, lost=True)
            return
        if losses >= defaults.MAX_LOSSES:
            message = f"{where}; its attempts were lost {losses} times in all: given up"
        else:
            message = (
                f"{where} while it sent a request that is not safe to send twice; not sent again "
                "(set `idempotent: true` in its input if the endpoint honours Idempotency-Key)"
            )
        if tx.finish_task_run(run, RunStatus.FAILED, message, {"status": "FAILED"}, actor=actor, lost=True):
            self._on_failure(tx, tx.state(run.execution_id, lock=True), run.key, message, effects)

    def _advance(self, tx: Transaction, state: ExecutionState, effects: Effects) -> None:
        execution = state.execution
        if not execution.status.runs_tasks:
            return
        variables = self._variables(tx, execution.project)
        scope = state.scope(variables)
        step = planner.plan(state.pipeline, state.statuses(), lambda text: expressions.check(text, scope.lookup))
        tx.settle_task_runs(execution.id, step.skip, RunStatus.SKIPPED)
        bound, unbound, reads = _bind(tx, state, step.start, scope)
        asked, unasked = _approvals(state.pipeline, bound)
        unbound += unasked
        bound = [(key, task) for key, task in bound if key not in dict(unasked)]
        # Read after binding: the project's variables are loaded only if a binding asked for one.
        secrets = variables.secrets
        failed = [(key, redact_message(message, secrets)) for key, message in [*step.fail, *unbound]]
        if failed:
            tx.settle_task_runs(execution.id, failed, RunStatus.FAILED)
            # A failure that stops the run decides; ignored ones only let it go on.
            stopping = [item for item in failed if not state.pipeline.task(item[0]).ignore_failure]
            key, message = (stopping or failed)[0]
            self._on_failure(tx, tx.state(execution.id), key, message, effects)
            return
        recorded, sealed = self._conceal(bound, secrets)
        recorded = self._hold_asked(tx, state, recorded, sealed=sealed, asked=asked, reads=reads, effects=effects)
        left = self._start_nested(tx, state, recorded, effects)
        if left is None:
            return
        recorded = left
        queued = tx.queue_task_runs(execution.id, recorded, Schedule.plan(now(), 0.0, self.horizon), sealed=sealed)
        effects.dispatch += [Dispatch(run.id, run.attempt, run.type, execution.rollback) for run in queued]
        if step.done:
            # An output naming a skipped task reads as empty rather than failing a finished run.
            output = resolve(dict(state.pipeline.output), replace(scope, lenient=True).lookup)
            output = mask_secrets(output, variables.secrets)
            if tx.transition(execution.id, ExecutionStatus.COMPLETED, "", output=output):
                effects.ended.append(execution.id)

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
            f"nested in {_named(execution)} by task {_describe(key)}",
            requested_by=execution.requested_by,
            requested_by_admin=execution.requested_by_admin,
            parent_id=execution.id,
            relation=Relation.NESTED,
        )
        message, output = nesting.waiting(child)
        tx.wait_for_child(execution.id, key, task, message, output)
        log.info("execution %s: task %s started nested execution %s", execution.id, _describe(key), child.id)
        if child.status is ExecutionStatus.RUNNING:
            self._advance(tx, tx.state(child.id, lock=True), effects)
        return None

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
            tx.transition(execution.id, ExecutionStatus.WAITING, f"task {_describe(key)} is {summary}{more}")

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
                tx.transition(execution.id, ExecutionStatus.RUNNING, f"task {_describe(key)} {verdict}", actor)
            if new is not OperationStatus.APPROVED:
                if tx.refuse_task_run(answered.task_run_id, verdict, actor):
                    self._on_failure(tx, tx.state(execution.id), key, verdict, effects)
            elif answered.kind is OperationKind.APPROVAL:
                if tx.complete_held_task_run(answered.task_run_id, verdict, answered.output(), actor):
                    self._advance(tx, tx.state(execution.id), effects)
            else:
                schedule = Schedule.plan(now(), 0.0, self.horizon)
                if (run := tx.release_task_run(answered.task_run_id, verdict, schedule, actor)) is not None:
                    effects.dispatch.append(Dispatch(run.id, run.attempt, run.type, execution.rollback))
        self._follow_up(effects)
        return answered

    def _supersede(self, operation: UserOperation, why: str) -> None:
        """Cancel another execution's pending approval a newer one replaced: its task fails, as a rejection's."""
        try:
            self._close(operation, OperationStatus.CANCELED, why, "")
        except Conflict:
            log.info("user operation %s was answered before a newer execution superseded it", operation.id)

    def _variables(self, tx: Transaction, project: str) -> ProjectVariables:
        """The project's variables for a binding scope, read in this step's transaction when a binding asks."""
        return ProjectVariables(lambda: project_values(tx.conn, self.store.vault, project))

    def _conceal(
        self, bound: list[tuple[TaskKey, BoundTask]], secrets: Secrets
    ) -> tuple[list[tuple[TaskKey, BoundTask]], dict[TaskKey, str]]:
        """What each task run records (secrets masked), and the full input of those that had any, sealed."""
        recorded, sealed = [], {}
        for key, task in bound:
            masked, full = conceal(task, secrets, self.store.vault)
            recorded.append((key, masked))
            if full is not None:
                sealed[key] = full
        return recorded, sealed

    def _on_failure(self, tx: Transaction, state: ExecutionState, key: TaskKey, message: str, effects: Effects) -> None:
        execution = state.execution
        if state.pipeline.task(key).ignore_failure:
            log.info("execution %s: %s failed and is ignored: %s", execution.id, _describe(key), message)
            self._advance(tx, state, effects)
            return
        # A failure that arrives while the execution is paused (its task was already running) still rolls it back.
        if not execution.status.in_progress:
            return
        reason = f"task {_describe(key)} failed: {message}"
        # Whether it fails or rolls back, what it started in nested executions stops with it.
        why = f"canceled: {_named(execution)} stopped, {reason}"
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

    # -- after a step has committed

    def _follow_up(self, effects: Effects) -> None:
        self.relay(effects.dispatch)
        for execution_id in effects.ended:
            self.finished(execution_id)
        for operation, why in effects.superseded:
            self._supersede(operation, why)

    def relay(self, items: Sequence[Dispatch]) -> int:
        """Send messages a committed step recorded as sent; how many the broker took.

        The first send the broker refuses ends the relay: the rest are marked unsent and the sweep sends them
        once the broker is back (if even that mark cannot be written, the sweep sends them again after a lease).
        """
        for position, item in enumerate(items):
            try:
                self.dispatcher.dispatch(item)
            except Exception as error:  # whatever the broker raised: the database still has the message
                log.warning("the broker did not take %d message(s); the sweep will send them: %s", len(items), error)
                self._unsent(items[position:])
                return position
        return len(items)

    def _unsent(self, items: Sequence[Dispatch]) -> None:
        try:
            self.store.mark_sent([(item.task_run_id, item.attempt) for item in items], None)
        except SQLAlchemyError as error:
            log.warning("could not mark %d message(s) unsent; the sweep will resend them: %s", len(items), error)

    def finished(self, execution_id: str) -> None:
        """After an execution ends: settle the execution it rolled back, or the Pipeline task it was nested by, and
        start queued ones."""
        effects = Effects()
        with self.store.transaction() as tx:
            execution = tx.execution(execution_id)
            if execution.rollback and execution.parent_id is not None:
                self._settle_parent(tx, execution.parent_id, effects)
            elif execution.relation is Relation.NESTED and execution.status.is_terminal:
                self._settle_nested(tx, execution, effects)
            if execution.pipeline_id is not None:
                self._promote(tx, execution.pipeline_id, effects)
        self._follow_up(effects)

    def promote(self, pipeline_id: str) -> int:
        """Start a pipeline's queued executions while its concurrency allows; how many started."""
        effects = Effects()
        with self.store.transaction() as tx:
            started = self._promote(tx, pipeline_id, effects)
        self._follow_up(effects)
        return started

    def _promote(self, tx: Transaction, pipeline_id: str, effects: Effects) -> int:
        promoted = tx.promote_queued(pipeline_id)
        for execution_id in promoted:
            self._advance(tx, tx.state(execution_id, lock=True), effects)
        return len(promoted)

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


def _named(execution: Execution) -> str:
    return f"{execution.pipeline_name} #{execution.index}"


def _bind(
    tx: Transaction, state: ExecutionState, keys: Iterable[TaskKey], scope: Scope
) -> tuple[list[tuple[TaskKey, BoundTask]], list[tuple[TaskKey, str]], dict[TaskKey, frozenset[str]]]:
    """What each task about to be queued is given, the tasks whose bindings or endpoints cannot be resolved, and
    the variables each task's bindings read."""
    bound, unbound, read = [], [], {}
    for key in keys:
        task = state.pipeline.task(key)
        reads = VariableReads(scope.variables)
        try:
            given = bind_task(task, replace(scope, variables=reads))
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
        read[key] = frozenset(reads.names)
    return bound, unbound, read


def _approvals(
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
