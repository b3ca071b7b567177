"""A Celery worker inside the calling process, on threads: for one machine with no worker processes
(the demo, with Celery's in-memory transport when no Redis is reachable)."""

from __future__ import annotations

import threading
from types import TracebackType

from celery import Celery
from celery.app.trace import setup_worker_optimizations
from celery.worker import WorkController

from workers.constants import QUEUE_ORCHESTRATOR, QUEUES, TASK_SWEEP

START_TIMEOUT_SECONDS = 30.0


class EmbeddedWorker:
    """Runs a worker on every Rollway queue in a background thread; with `sweep_seconds`, its beat too."""

    def __init__(self, app: Celery, concurrency: int = 4, sweep_seconds: float | None = None) -> None:
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._sweep_seconds = sweep_seconds
        self._app = app
        self._hostname = f"rollway-embedded-{threading.get_native_id()}@localhost"
        self._worker = WorkController(
            app=app,
            hostname=self._hostname,
            pool="threads",
            concurrency=concurrency,
            queues=list(QUEUES),
            loglevel="WARNING",
            ready_callback=lambda _consumer: self._ready.set(),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(target=self._worker.start, name="rollway-worker", daemon=True)

    def start(self) -> EmbeddedWorker:
        """Start consuming; returns once the worker is ready for tasks."""
        # What Celery's own worker does at start: threads of the pool otherwise trace tasks with Celery's
        # default app (its "current app"), whose backend would send our link_error errbacks to an AMQP
        # broker on localhost. It makes `app` the current app of this process, which the embedded mode
        # can afford: one Rollway app per process.
        setup_worker_optimizations(self._app, self._hostname)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError(f"the embedded worker did not start within {START_TIMEOUT_SECONDS:.0f}s")
        if self._sweep_seconds:
            threading.Thread(target=self._beat, args=(self._sweep_seconds,), name="rollway-beat", daemon=True).start()
        return self

    def _beat(self, seconds: float) -> None:
        """What `rollway beat` does, in a thread: send the sweep every `seconds` (the in-memory transport has no
        other process to run a beat in)."""
        while not self._stopping.wait(seconds):
            self._app.send_task(TASK_SWEEP, queue=QUEUE_ORCHESTRATOR, expires=seconds)

    def stop(self) -> None:
        """Stop consuming and wait for tasks in progress."""
        self._stopping.set()
        self._worker.stop(in_sighandler=False)
        self._thread.join(START_TIMEOUT_SECONDS)

    def __enter__(self) -> EmbeddedWorker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
