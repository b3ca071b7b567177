"""The read behind the dashboard: a period's top-level executions, grouped by pipeline, as `deliveries.Run`s."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, select

from orchestrator.deliveries import Run
from orchestrator.schema import executions
from orchestrator.status import ExecutionStatus


class PipelineKey(NamedTuple):
    """A pipeline as the dashboard names it: its project and its name (an execution keeps both if it is deleted)."""

    project: str
    name: str


def runs_between(
    engine: Engine, since: datetime, until: datetime, project: str | None, pipeline: str | None = None
) -> dict[PipelineKey, list[Run]]:
    """Executions asked for in [since, until) that no other execution started (no rollback, no nested child), of
    `project` (None: every project) and of the pipeline named `pipeline` (None: every pipeline), by pipeline."""
    query = (
        select(
            executions.c.project,
            executions.c.pipeline_name,
            executions.c.status,
            executions.c.created_at,
            executions.c.started_at,
            executions.c.finished_at,
        )
        .where(executions.c.relation.is_(None), executions.c.created_at >= since, executions.c.created_at < until)
        .order_by(executions.c.project, executions.c.pipeline_name, executions.c.created_at)
    )
    if project is not None:
        query = query.where(executions.c.project == project)
    if pipeline is not None:
        query = query.where(executions.c.pipeline_name == pipeline)
    found: defaultdict[PipelineKey, list[Run]] = defaultdict(list)
    with engine.connect() as conn:
        for row in conn.execute(query):
            run = Run(ExecutionStatus(row.status), row.created_at, row.started_at, row.finished_at)
            found[PipelineKey(row.project, row.pipeline_name)].append(run)
    return dict(found)
