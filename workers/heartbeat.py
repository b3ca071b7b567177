"""The heartbeat: renews the leases of the task runs a worker process is running.

One thread per process, started on first use (a prefork child starts its own after the fork). It renews every
held lease at a third of the lease, so a run is only reclaimed after its worker missed two renewals in a row.
An attempt that has run past `ATTEMPT_TIMEOUT_SECONDS` is no longer renewed: a wedged executor is then
reclaimed by the sweep like a dead worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from orchestrator import defaults
from orchestrator.execution import TaskRun
from orchestrator.store import Store
from orchestrator.threads import ProcessThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """One lease this process holds: the run's attempt, who holds it, and since when (monotonic)."""

    run: TaskRun
    holder: str
    since: float


class Heartbeat:
    """Keeps the leases of running attempts alive."""

    def __init__(
        self, store: Store, lease_seconds: float, attempt_timeout: float = defaults.ATTEMPT_TIMEOUT_SECONDS
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.attempt_timeout = attempt_timeout
        self._held: dict[tuple[str, int], Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = ProcessThread(self._run, "rollway-heartbeat")

    @contextmanager
    def hold(self, run: TaskRun, holder: str) -> Iterator[None]:
        """Renew `holder`'s lease on `run` for as long as the block runs."""
        key = (run.id, run.attempt)
        with self._lock:
            self._held[key] = Held(run, holder, time.monotonic())
        self._thread.ensure()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.lease_seconds / 3)
            self.beat()

    def beat(self) -> int:
        """Renew every lease still worth renewing now; how many were renewed."""
        now = time.monotonic()
        with self._lock:
            held = list(self._held.values())
        renewed = 0
        for item in held:
            if now - item.since > self.attempt_timeout:
                log.warning(
                    "task run %s attempt %s ran past %.0f s: its lease is left to expire",
                    item.run.id,
                    item.run.attempt,
                    self.attempt_timeout,
                )
                continue
            try:
                renewed += self.store.renew_lease(item.run, item.holder, self.lease_seconds)
            except SQLAlchemyError as error:
                # The database is away: the lease runs on, and the next beat tries again.
                log.warning("could not renew the lease of task run %s: %s", item.run.id, error)
        return renewed
