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

This module owns triggering and advancing executions, the outcomes of task runs and what follows a committed
step; the `Engine` combines it with parts that own one concern each (`steps.py` declares what they share):
holding runs for a person's answer (`holds.py`), control and nested executions (`control.py`), and rollbacks
(`rollbacks.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from orchestrator import defaults, endpoints, expressions, gaps, planner, readiness, tasktypes, workspace
from orchestrator.bindings import Scope, resolve
from orchestrator.control import Control, Nesting
from orchestrator.errors import PipelineDisabled, Problem, RollbackNotReady, RollwayError
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, Relation, TaskRun
from orchestrator.holds import Holds, approvals
from orchestrator.inputs import BoundTask, bind_input, bind_task
from orchestrator.outbox import Dispatch, Schedule
from orchestrator.outcome import Failed, Lost, Outcome, Succeeded, Waiting
from orchestrator.pipeline import TaskKey
from orchestrator.preflight import Preflight, Prober
from orchestrator.redaction import Secrets, mask_secrets, redact_message
from orchestrator.rollbacks import Rollbacks
from orchestrator.schema import now
from orchestrator.sealing import conceal
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.steps import Effects
from orchestrator.store import Store
from orchestrator.transaction import Transaction
from orchestrator.useroperations import VariableReads
from orchestrator.variables import ProjectVariables, project_values

__all__ = ["LOSSES_KEY", "Dispatcher", "Effects", "Engine", "Started", "bind_input"]

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


@dataclass(frozen=True)
class Started:
    """A triggered execution, and the reasons its rollback could not run that `force` overrode (empty: none)."""

    execution: Execution
    overridden: list[Problem] = field(default_factory=list)


class Engine(Holds, Control, Nesting, Rollbacks):
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
        unrun = gaps.unsupported(record.pipeline)
        if unrun:
            raise PipelineDisabled(f"pipeline '{record.name}' cannot run: {gaps.summary(unrun)}", unrun)
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
            effects.dispatch.append(Dispatch.of(again, execution, countdown))

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
        asked, unasked = approvals(state.pipeline, bound)
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
        effects.dispatch += [Dispatch.of(run, execution) for run in queued]
        if step.done:
            # An output naming a skipped task reads as empty rather than failing a finished run.
            output = resolve(dict(state.pipeline.output), replace(scope, lenient=True).lookup)
            output = mask_secrets(output, variables.secrets)
            if tx.transition(execution.id, ExecutionStatus.COMPLETED, "", output=output):
                effects.ended.append(execution.id)

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


def _bind(
    tx: Transaction, state: ExecutionState, keys: Iterable[TaskKey], scope: Scope
) -> tuple[list[tuple[TaskKey, BoundTask]], list[tuple[TaskKey, str]], dict[TaskKey, frozenset[str]]]:
    """What each task about to be queued is given, the tasks whose bindings or endpoints cannot be resolved, and
    the variables each task's bindings read."""
    bound, unbound, read = [], [], {}
    for key in keys:
        task = workspace.for_run(state.pipeline, state.pipeline.task(key))
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
        if task.type == tasktypes.SSH and tasktypes.SSH_SERVER not in ids:
            # Code Stream's SSH tasks name no endpoint: the project's ssh endpoints hold the host keys they check.
            project_hosts = tx.endpoint_ids(state.execution.project, endpoints.SSH)
            ids |= {f"{tasktypes.SSH_SERVER}.{n}": found for n, found in enumerate(project_hosts)}
        bound.append((key, replace(given, endpoints={role: str(found) for role, found in ids.items()})))
        read[key] = frozenset(reads.names)
    return bound, unbound, read
