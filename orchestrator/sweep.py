"""The sweep: what puts executions back on their way when a message, a worker or a follow-up was lost.

`rollway beat` has a worker run it every `ROLLWAY_SWEEP_SECONDS`. Each pass, in order:
1. reclaims task runs whose lease expired (their worker died): `Engine.task_finished(run, Lost)`;
2. sends queued runs that are due and were never sent (the broker was down, or a long wait came due), and
   sends again those sent more than a lease ago and still not claimed (their message was lost), each later
   re-send of one run waiting twice as long as the one before (`outbox.resend_due`);
3. takes the next step of executions whose rollback ended while they still show ROLLING_BACK: settles them, or
   starts the next rollback of a manual one (`Engine.settle`); and settles Pipeline tasks still waiting for a
   nested execution that ended;
4. starts queued executions whose pipeline has a free slot;
5. advances executions that run tasks but have none open (a step's follow-up was lost);
6. expires ACTIVE approvals (UserOperation tasks) nobody answered in time: their task fails, so its stage rolls
   back (`Engine.expire`);
7. sends pipeline notifications that are due and no worker took: one whose follow-up was lost, or that failed and
   waited out its backoff (`notices.py`).
8. probes the endpoints that enabled pipelines' rollback pipelines name, when their probe is older than
   `PROBE_REFRESH_SECONDS` (half the freshness a trigger asks for), so a release finds them answered recently
   (`preflight.py`). Last: a probe may wait for a slow endpoint, and nothing above should wait behind it.

Every step is safe to repeat, and only one sweep runs at a time (`Store.sweep_lock`): two beats do no harm.
A run held for a person's answer (WAITING, see `useroperations.py`) has no due time and no lease: no step sends
or reclaims it, and its execution has an open run, so it is not taken for stalled either. The same holds for a
Pipeline task's run waiting for its nested execution. A PAUSED execution runs no tasks: none of its runs is sent,
and it is not taken for stalled; its resume sends its queued runs (and marks them sent, so a send lost then is
sent again a lease later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from orchestrator import defaults, notices, useroperations
from orchestrator.engine import Engine
from orchestrator.outbox import Dispatch, countdown, resend_due
from orchestrator.outcome import Lost
from orchestrator.schema import now

log = logging.getLogger(__name__)

ACTOR = "sweep"


@dataclass(frozen=True)
class SweepReport:
    """What one pass did; `skipped` when another sweep held the lock."""

    reclaimed: int = 0
    sent: int = 0
    settled: int = 0
    started: int = 0
    advanced: int = 0
    expired: int = 0
    notified: int = 0
    probed: int = 0
    skipped: bool = False

    def __str__(self) -> str:
        if self.skipped:
            return "sweep skipped: another sweep is running"
        return (
            f"sweep: {self.reclaimed} lost run(s) reclaimed, {self.sent} message(s) sent, {self.settled} "
            f"rollback(s) settled, {self.started} queued execution(s) started, {self.advanced} advanced, "
            f"{self.expired} approval(s) expired, {self.notified} notification(s) sent, "
            f"{self.probed} endpoint(s) probed"
        )


class Sweeper:
    """Runs the sweep over one engine's store."""

    def __init__(self, engine: Engine, lease_seconds: float, batch: int = defaults.SWEEP_BATCH) -> None:
        self.engine = engine
        self.store = engine.store
        self.lease = timedelta(seconds=lease_seconds)
        self.batch = batch

    def sweep(self) -> SweepReport:
        """One pass; see the module's docstring."""
        with self.store.sweep_lock() as held:
            if not held:
                return SweepReport(skipped=True)
            report = SweepReport(
                reclaimed=self._reclaim(),
                sent=self._send(),
                settled=self._settle(),
                started=self._start(),
                advanced=self._advance(),
                expired=self._expire(),
                notified=self._notify(),
                probed=self.engine.preflight.refresh(),
            )
        counts = (report.reclaimed, report.sent, report.settled, report.started, report.advanced, report.expired)
        if any(counts) or report.notified:
            log.info("%s", report)
        return report

    def _reclaim(self) -> int:
        with self.store.transaction() as tx:
            expired = tx.expired_leases(now(), self.batch)
        for run in expired:
            log.warning("task run %s attempt %s: lease expired (worker %s)", run.id, run.attempt, run.worker)
            self.engine.task_finished(run, Lost(run.worker), actor=ACTOR)
        return len(expired)

    def _send(self) -> int:
        stamp = now()
        horizon = stamp + timedelta(seconds=self.engine.horizon)
        with self.store.transaction() as tx:
            candidates = tx.due_to_send(horizon, stamp - self.lease, self.batch)
            due = [
                item for item in candidates if resend_due(item[0].sent_at, item[0].dispatch_after, stamp, self.lease)
            ]
            tx.mark_sent([(run.id, run.attempt) for run, _, _ in due], stamp)
        items = [
            Dispatch(run.id, run.attempt, run.type, rollback, countdown(run.dispatch_after, stamp), label)
            for run, rollback, label in due
        ]
        return self.engine.relay(items)

    def _settle(self) -> int:
        with self.store.transaction() as tx:
            parents = tx.unsettled_parents(self.batch)
            nested = tx.unsettled_nested(self.batch)
        for parent_id in parents:
            self.engine.settle(parent_id)
        for child_id in nested:
            self.engine.finished(child_id)
        return len(parents) + len(nested)

    def _start(self) -> int:
        with self.store.transaction() as tx:
            pipelines = tx.pipelines_with_queued_executions()
        started = 0
        for pipeline_id in pipelines:
            started += self.engine.promote(pipeline_id)
        return started

    def _advance(self, grace: float = defaults.SWEEP_SECONDS) -> int:
        with self.store.transaction() as tx:
            stalled = tx.stalled(now() - timedelta(seconds=grace), self.batch)
        for execution_id in stalled:
            log.warning("execution %s runs tasks but has none open: advancing it", execution_id)
            self.engine.advance(execution_id)
        return len(stalled)

    def _expire(self) -> int:
        with self.store.transaction() as tx:
            due = useroperations.expired(tx.conn, now(), self.batch)
        expired = 0
        for operation in due:
            if self.engine.expire(operation, ACTOR) is not None:
                log.info(
                    "user operation %s expired: its task %s.%s fails", operation.id, operation.stage, operation.task
                )
                expired += 1
        return expired

    def _notify(self) -> int:
        stamp = now()
        with self.store.transaction() as tx:
            due = notices.due_to_send(tx.conn, stamp, stamp - self.lease, self.batch)
        try:
            self.engine.notify(due)
        except Exception as error:  # whatever the broker raised: the next pass sends them
            log.warning("%d notification(s) are left to the next sweep: %s", len(due), error)
            return 0
        return len(due)
