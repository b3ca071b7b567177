"""The audit trail: who asked to change what, in which project, and what they were answered.

Every API request that may change something (POST, PUT, PATCH, DELETE) leaves one entry, refused ones included:
a 403 or a 404 someone keeps getting is as telling as a change that went through. Entries name the route and the
path, never a request body, so nothing secret is written here; a handler may add a note of its own (a trigger
forced past its rollback check records the reasons it overrode).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from orchestrator.schema import audit, now

MAX_PATH = 2000
MAX_NOTE = 4000


@dataclass(frozen=True)
class Entry:
    """One audited request."""

    id: int
    at: datetime
    actor: str
    project: str | None
    method: str
    path: str
    route: str
    status: int
    note: str | None = None
    """What the answer alone does not say (a trigger forced past its rollback check, and why); None mostly."""


def _entry(row: Any) -> Entry:
    return Entry(row.id, row.at, row.actor, row.project, row.method, row.path, row.route, row.status, row.note)


class AuditTrail:
    """The audit table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        *,
        actor: str,
        project: str | None,
        method: str,
        path: str,
        route: str,
        status: int,
        note: str | None = None,
    ) -> None:
        values = {
            "at": now(),
            "actor": actor[:200],
            "project": project,
            "method": method[:10],
            "path": path[:MAX_PATH],
            "route": route[:100],
            "status": status,
            "note": None if note is None else note[:MAX_NOTE],
        }
        with self.engine.begin() as conn:
            conn.execute(audit.insert().values(**values))

    def list(self, project: str | None = None, limit: int = 100, before: int | None = None) -> list[Entry]:
        """Newest first; `project` None means every project's entries and those of no project."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if project is not None:
            query = query.where(audit.c.project == project)
        if before is not None:
            query = query.where(audit.c.id < before)
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]
