"""JSON views of pipelines and executions, in the API's camelCase names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator.document import to_document
from orchestrator.execution import Event, Execution, PipelineRecord, TaskRun
from orchestrator.pipeline import Pipeline
from orchestrator.planner import stage_status


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def pipeline_view(record: PipelineRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        **to_document(record.pipeline),
        "createdAt": timestamp(record.created_at),
        "updatedAt": timestamp(record.updated_at),
    }


def execution_view(execution: Execution) -> dict[str, Any]:
    return {
        "id": execution.id,
        "pipeline": execution.pipeline_name,
        "pipelineId": execution.pipeline_id,
        "project": execution.project,
        "index": execution.index,
        "status": execution.status.value,
        "statusMessage": execution.status_message,
        "comments": execution.comments,
        "rollback": execution.rollback,
        "rollbackOf": execution.rollback_of,
        "rollbackExecutionId": execution.rollback_execution_id,
        "input": dict(execution.input),
        "output": dict(execution.output),
        "requestBy": execution.requested_by,
        "createdAt": timestamp(execution.created_at),
        "startedAt": timestamp(execution.started_at),
        "finishedAt": timestamp(execution.finished_at),
        "link": f"/api/executions/{execution.id}",
    }


def event_view(event: Event) -> dict[str, Any]:
    """One entry of an execution's history (`GET /api/executions/<id>/events`)."""
    return {
        "at": timestamp(event.at),
        "status": event.status,
        "previous": event.previous,
        "stage": event.stage,
        "task": event.task,
        "message": event.message,
        "actor": event.actor,
    }


def task_run_view(run: TaskRun) -> dict[str, Any]:
    return {
        "name": run.name,
        "type": run.type,
        "status": run.status.value,
        "statusMessage": run.status_message,
        "input": None if run.input is None else dict(run.input),
        "output": None if run.output is None else dict(run.output),
        "attempt": run.attempt,
        "startedAt": timestamp(run.started_at),
        "finishedAt": timestamp(run.finished_at),
    }


def stages_view(pipeline: Pipeline, runs: list[TaskRun]) -> list[dict[str, Any]]:
    """Stages in run order with their tasks; a stage's status is derived from its tasks."""
    by_key = {run.key: run for run in runs}
    statuses = {key: run.status for key, run in by_key.items()}
    views = []
    for name in pipeline.stage_order:
        stage = pipeline.stages[name]
        stage_runs = [by_key[(name, task)] for group in stage.groups for task in group if (name, task) in by_key]
        started = [run.started_at for run in stage_runs if run.started_at is not None]
        finished = [run.finished_at for run in stage_runs if run.finished_at is not None]
        status = stage_status(pipeline, stage, statuses)
        views.append(
            {
                "name": name,
                "status": status.value,
                "startedAt": timestamp(min(started)) if started else None,
                "finishedAt": timestamp(max(finished)) if finished and status.is_terminal else None,
                "tasks": [task_run_view(run) for run in stage_runs],
            }
        )
    return views
