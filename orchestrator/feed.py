"""The activity feed the web UI follows live: which executions changed since a point of the event log.

Every status change of an execution or a task run is a row of `events`, so the log's ids are the feed's cursor:
a page remembers the last id it saw and asks what came after. Ids are handed out before commit, so one may
appear after a higher one did; the feed therefore looks back a little (`LOOKBACK`) and reports each change once
per id it has not reported yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from orchestrator.schema import events, executions

LOOKBACK = 200
MAX_ENTRIES = 500


@dataclass(frozen=True)
class Change:
    """One event of the log: its id, the execution it moved, and the status it moved to."""

    id: int
    execution_id: str
    status: str


class ActivityFeed:
    """Reads of the event log as a stream of changes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest_id(self) -> int:
        """The id of the newest event (0 with none): a new follower starts after it."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())

    def changes_after(self, after: int, project: str | None, seen: frozenset[int] = frozenset()) -> list[Change]:
        """Events after id `after` (and, looking back, late-committed ones not in `seen`), oldest first, of
        executions in `project` (None: every project)."""
        query = (
            select(events.c.id, events.c.execution_id, events.c.status)
            .join(executions, executions.c.id == events.c.execution_id)
            .where(events.c.id > max(0, after - LOOKBACK))
            .order_by(events.c.id)
            .limit(MAX_ENTRIES)
        )
        if project is not None:
            query = query.where(executions.c.project == project)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Change(int(row.id), str(row.execution_id), str(row.status))
            for row in rows
            if row.id > after or (row.id not in seen and row.id > after - LOOKBACK)
        ]
