"""A watchdog that cuts database connections held past their limit.

A PostgreSQL server that hangs (or a network that black-holes its packets) leaves a client waiting forever in
`recv`: neither libpq nor psycopg has a client-side read timeout, and the server-side `statement_timeout`
never fires when the server cannot be reached. The watchdog tracks every connection from the moment the pool
hands it out until it is given back; one that is held past its limit has its socket shut down, which wakes the
waiting thread with "server closed the connection", an error SQLAlchemy treats as a disconnect. One thread
serves every connection of a process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidatePoolError

from orchestrator.threads import ProcessThread

log = logging.getLogger(__name__)


class Watchdog:
    """Cuts connections of one engine that are held longer than `limit` seconds."""

    def __init__(self, limit: float, clock: Any = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._held: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread = ProcessThread(self._run, "rollway-db-watchdog")

    def watch(self, engine: Engine, ping: bool = False) -> None:
        """Track the connections `engine`'s pool hands out; with `ping`, test each one as it is handed out.

        The ping is ours rather than SQLAlchemy's `pool_pre_ping`, which runs before the pool's `checkout` event
        and so outside the watchdog: a ping to a hung server would wait for as long as the server hangs.
        """
        event.listen(engine, "checkout", self._pinging if ping else self._checked_out)
        event.listen(engine, "checkin", self._checked_in)

    def _checked_out(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        with self._lock:
            self._held[id(dbapi_connection)] = (self._clock() + self.limit, dbapi_connection)
        self._thread.ensure()

    def _pinging(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        self._checked_out(dbapi_connection, record, proxy)
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except psycopg.Error as error:
            self._checked_in(dbapi_connection, record)
            # The pool throws every older connection away and tries once more with a new one.
            raise InvalidatePoolError(f"a pooled connection failed its ping: {error}") from error

    def _checked_in(self, dbapi_connection: Any, _record: Any) -> None:
        with self._lock:
            self._held.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        interval = min(1.0, self.limit / 4)
        while True:
            time.sleep(interval)
            self.check()

    def check(self) -> int:
        """Cut every connection held past its deadline; how many were cut."""
        now = self._clock()
        with self._lock:
            overdue = [(key, conn) for key, (deadline, conn) in self._held.items() if deadline < now]
            for key, _ in overdue:
                del self._held[key]
        for _, conn in overdue:
            _cut(conn)
        return len(overdue)


def _cut(dbapi_connection: Any) -> None:
    """Shut the connection's socket down so a thread blocked reading it wakes with an error."""
    try:
        fd = dbapi_connection.pgconn.socket
    except (AttributeError, psycopg.Error):
        return  # not a psycopg connection, or already closed
    log.warning("a database connection was held past its limit (server not answering?): cutting it")
    try:
        # fromfd duplicates the descriptor; shutting the duplicate down shuts the shared socket down.
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError as error:
        log.debug("could not cut a database connection: %s", error)
