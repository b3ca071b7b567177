"""Running one task run in a worker: claim it with a lease, call its executor, hand the outcome to the engine.

This is the body of the Celery task `rollway.run_task`, kept free of Celery so that any dispatcher can call it.
The run's input was bound when it was queued, so claiming it is all the worker reads. Every outcome, a failure
included, goes to `Engine.task_finished`; database errors on the way are retried (`dbretry.py`), never
acknowledged away.

A run whose recorded input had secrets masked runs with its sealed full input (`sealing.py`); what it answers
(output, status message) has those secrets, Kubernetes Secret data and credentials masked before it is
recorded, and so does what the worker logs meanwhile (`logredaction.py`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from orchestrator.engine import Engine
from orchestrator.errors import DatabaseUnavailable, RollwayError
from orchestrator.execution import TaskRun
from orchestrator.outbox import run_label
from orchestrator.outcome import Failed, Outcome, Succeeded, Waiting
from orchestrator.redaction import NO_SECRETS, Secrets, redact, redact_message
from orchestrator.sealing import RunInput, unseal
from orchestrator.store import Store
from workers import logredaction, tasklog
from workers.dbretry import with_retry
from workers.executors.base import Executor, TaskCall
from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)


class TaskRunner:
    """Runs task runs for one worker process; `worker` names it in leases and events."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        executors: Mapping[str, Executor],
        heartbeat: Heartbeat,
        worker: str = "worker",
    ) -> None:
        self.store = store
        self.engine = engine
        self.executors = executors
        self.heartbeat = heartbeat
        self.worker = worker
        logredaction.install()
        tasklog.install()

    def run(self, task_run_id: str, attempt: int, worker: str | None = None) -> str:
        """Run one attempt of a task run, if it is there to take for that attempt; what became of it in a word or
        two (the Celery task's result, which Flower shows: "succeeded", "failed", "waiting", "not run")."""
        # A claim of its own: a retried claim recognises itself, a second delivery of the message does not.
        holder = f"{worker or self.worker} claim {secrets.token_hex(4)}"
        lease = self.heartbeat.lease_seconds
        run = with_retry(lambda: self.store.claim(task_run_id, attempt, holder, lease), "claim")
        if run is None:
            canceled = with_retry(lambda: self.store.cancel_abandoned(task_run_id, attempt, holder), "cancel")
            reason = "its execution is no longer running" if canceled else "not queued for this attempt, or paused"
            log.info("task run %s attempt %s not run: %s", task_run_id, attempt, reason)
            return "not run"
        given = self._given(run)
        pipeline, index = self._execution(run)
        with (
            tasklog.naming(run_label(pipeline, index, run.stage, run.name)),
            logredaction.secrets_of_this_task(given.secrets if isinstance(given, RunInput) else NO_SECRETS),
        ):
            log.info("task run %s attempt %s: running its %s task", run.id, run.attempt, run.type)
            with self.heartbeat.hold(run, holder):
                outcome = (
                    given if isinstance(given, Failed) else conceal(self._execute(run, given, pipeline), given.secrets)
                )
            with_retry(lambda: self.engine.task_finished(run, outcome, holder), "record the outcome")
            said = type(outcome).__name__.lower()
            log.info("task run %s attempt %s: %s", run.id, run.attempt, said)
            return said

    def _execution(self, run: TaskRun) -> tuple[str, int]:
        """The run's pipeline name and execution index (the log names the run by them: pipeline #index / stage /
        task)."""
        execution = with_retry(lambda: self.store.get_execution(run.execution_id), "read the execution")
        return execution.pipeline_name, execution.index

    def _given(self, run: TaskRun) -> RunInput | Failed:
        """What the run is run with (its sealed input opened), or why it cannot run."""
        try:
            return unseal(run.sealed_input, run.input, run.bindings, self.store.vault)
        except RollwayError as error:
            return Failed(f"its sealed input cannot be opened: {error.message}")

    def _execute(self, run: TaskRun, given: RunInput, pipeline: str) -> Outcome:
        executor = self.executors.get(run.type)
        if executor is None:
            return Failed(f"this worker has no executor for {run.type} tasks")
        call = TaskCall(
            run.type,
            given.input,
            given.bindings,
            run.attempt,
            run.state,
            run.endpoints,
            run.id,
            execution_id=run.execution_id,
            pipeline=pipeline,
            stage=run.stage,
            task=run.name,
        )
        try:
            return executor.execute(call)
        except DatabaseUnavailable:
            # Not the task's failure: the run keeps its lease until that runs out, and the sweep runs it again.
            raise
        except RollwayError as error:
            return Failed(error.message)
        except Exception as error:  # a bug in an executor must fail the task, not leave it RUNNING forever
            log.exception("executor for %s tasks raised", run.type)
            return Failed(f"{type(error).__name__}: {error}")


def conceal(outcome: Outcome, secrets: Secrets) -> Outcome:
    """An outcome as it may be recorded: secrets, Kubernetes Secret data and credentials masked out of its output
    and message (the state an executor keeps between attempts is never shown, and it may need what it kept)."""
    if isinstance(outcome, Succeeded):
        return Succeeded(redact(dict(outcome.output), secrets))
    if isinstance(outcome, Waiting):
        return Waiting(outcome.countdown, outcome.state, redact_message(outcome.message, secrets))
    if isinstance(outcome, Failed):
        output = None if outcome.output is None else redact(dict(outcome.output), secrets)
        return Failed(redact_message(outcome.message, secrets), output)
    return outcome
