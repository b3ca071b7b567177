"""Retrying a worker's database work through an outage, instead of acknowledging its message away.

A database error that may pass (connection refused or lost, a timeout, a deadlock, a busy SQLite file) is
retried with backoff for `DB_RETRY_SECONDS`; then `DatabaseUnavailable` is raised, and the Celery task puts its
message back in the queue. Errors that will not pass (a constraint, a bad value) are raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from orchestrator import defaults
from orchestrator.errors import DatabaseUnavailable
from orchestrator.retry import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")
BACKOFF = Backoff(base=0.2, cap=5.0)


def transient(error: BaseException) -> bool:
    """Whether a database error may pass if the same work is tried again."""
    if isinstance(error, OperationalError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def with_retry(
    action: Callable[[], T],
    what: str,
    budget: float = defaults.DB_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `action`, retrying transient database errors for `budget` seconds; `what` names it in logs."""
    started = clock()
    retry = 0
    while True:
        try:
            return action()
        except (DBAPIError, DisconnectionError, PoolTimeout) as error:
            if not transient(error):
                raise
            retry += 1
            spent = clock() - started
            if spent >= budget:
                raise DatabaseUnavailable(f"{what}: the database is still unreachable after {spent:.0f} s") from error
            delay = min(BACKOFF.delay(retry), max(0.0, budget - spent))
            log.warning("%s: database error, retry %d in %.1f s: %s", what, retry, delay, _first_line(error))
            sleep(delay)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
