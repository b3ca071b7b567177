"""JSON views of pipelines and executions, in the API's camelCase names.

Every view masks secrets (`redaction.py`): what the store holds is masked already when it is recorded, and the
views mask again, so a value recorded before a variable became secret, or by an older Rollway, is not shown
either. Inside a request the masked values include those of the project's SECRET and RESTRICTED variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import g, has_app_context

from api.services import services
from orchestrator import gaps
from orchestrator.document import to_document
from orchestrator.errors import Problem
from orchestrator.execution import Child, Event, Execution, PipelineRecord, TaskRun
from orchestrator.notices import Notice, NoticeStatus
from orchestrator.pipeline import Pipeline
from orchestrator.planner import stage_status
from orchestrator.redaction import NO_SECRETS, Secrets, redact, redact_message
from orchestrator.variables import Variables

SECRETS_CACHE = "rollway_project_secrets"


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def project_secrets(project: str) -> Secrets:
    """The values of a project's SECRET and RESTRICTED variables, read once per request (none outside one)."""
    if not has_app_context():
        return NO_SECRETS
    cache: dict[str, Secrets] = g.setdefault(SECRETS_CACHE, {})
    if project not in cache:
        store = services().store
        cache[project] = Variables(store.engine, store.vault).values(project).secrets
    return cache[project]


def pipeline_document(record: PipelineRecord) -> dict[str, Any]:
    """A saved pipeline's document as the API shows and exports it: secrets masked, bindings kept."""
    document: dict[str, Any] = redact(to_document(record.pipeline), project_secrets(record.project))
    return document


def pipeline_warnings(pipeline: Pipeline) -> list[Problem]:
    """What the pipeline lacks before it may run, as of now (`gaps.py`): endpoints and variables missing, task
    types Rollway does not run."""
    store = services().store
    return gaps.warnings(pipeline, store.endpoint_exists, Variables(store.engine, store.vault).exists)


def pipeline_view(record: PipelineRecord) -> dict[str, Any]:
    """A pipeline as the API shows it, with Code Stream's `_warnings` (an empty list when it may run)."""
    return {
        "id": record.id,
        **pipeline_document(record),
        "_warnings": [problem.as_dict() for problem in pipeline_warnings(record.pipeline)],
        "createdAt": timestamp(record.created_at),
        "updatedAt": timestamp(record.updated_at),
    }


def rollback_child(children: Sequence[Child]) -> Child | None:
    """The child that rolls the execution back (the latest started, of a manual rollback's several), if any."""
    rollbacks = [child for child in children if child.relation.rolls_back]
    started = [child for child in rollbacks if child.started_at is not None]
    latest = started or rollbacks
    return latest[-1] if latest else None


def child_view(child: Child) -> dict[str, Any]:
    return {
        "id": child.id,
        "pipeline": child.pipeline_name,
        "index": child.index,
        "relation": child.relation.value,
        "status": child.status.value,
    }


def execution_view(execution: Execution, children: Sequence[Child] | None = None) -> dict[str, Any]:
    """An execution as the API shows it; `children` are its child executions, read here when not given.

    `rollback`, `rollbackOf` and `rollbackExecutionId` are the contract's names for what `parentId`, `relation`
    and the children say about rollbacks.
    """
    secrets = project_secrets(execution.project)
    if children is None:
        children = services().store.children([execution.id]).get(execution.id, [])
    rolled_back_by = rollback_child(children)
    return {
        "id": execution.id,
        "pipeline": execution.pipeline_name,
        "pipelineId": execution.pipeline_id,
        "project": execution.project,
        "index": execution.index,
        "status": execution.status.value,
        "statusMessage": redact_message(execution.status_message, secrets),
        "comments": redact_message(execution.comments, secrets),
        "rollback": execution.rollback,
        "rollbackOf": execution.parent_id if execution.rollback else None,
        "rollbackExecutionId": None if rolled_back_by is None else rolled_back_by.id,
        "parentId": execution.parent_id,
        "relation": None if execution.relation is None else execution.relation.value,
        "input": redact(dict(execution.input), secrets),
        "output": redact(dict(execution.output), secrets),
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
        "message": redact_message(event.message),
        "actor": event.actor,
    }


def task_run_view(run: TaskRun, secrets: Secrets = NO_SECRETS) -> dict[str, Any]:
    return {
        "name": run.name,
        "type": run.type,
        "status": run.status.value,
        "statusMessage": redact_message(run.status_message, secrets),
        "input": None if run.input is None else redact(dict(run.input), secrets),
        "output": None if run.output is None else redact(dict(run.output), secrets),
        "attempt": run.attempt,
        "startedAt": timestamp(run.started_at),
        "finishedAt": timestamp(run.finished_at),
    }


def stages_view(pipeline: Pipeline, runs: list[TaskRun]) -> list[dict[str, Any]]:
    """Stages in run order with their tasks; a stage's status is derived from its tasks."""
    secrets = project_secrets(pipeline.project)
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
                "tasks": [task_run_view(run, secrets) for run in stage_runs],
                # Task names by parallel group, in run order: the tasks of one group run side by side.
                "groups": [list(group) for group in stage.groups],
            }
        )
    return views


def notifications_view(project: str, found: list[Notice]) -> list[dict[str, Any]]:
    """What became of an execution's notifications: never where they went (a URL may hold a token) nor what they
    said; `success` is None until an attempt has ended."""
    secrets = project_secrets(project)
    return [
        {
            "event": notice.event,
            "type": notice.type,
            "status": notice.status.value,
            "success": _success(notice),
            "responseCode": notice.response_code,
            "attempts": notice.attempts,
            "error": redact_message(notice.error, secrets),
            "at": timestamp(notice.finished_at or notice.created_at),
            "nextAttemptAt": timestamp(notice.next_attempt_at) if notice.status is NoticeStatus.PENDING else None,
        }
        for notice in found
    ]


def _success(notice: Notice) -> bool | None:
    """How the last attempt that ended went; None when none has (the first one may be under way)."""
    if notice.status is NoticeStatus.PENDING:
        return False if notice.error else None
    return notice.status is NoticeStatus.SENT
