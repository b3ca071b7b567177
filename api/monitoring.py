"""The monitoring API, Flower-style: queue depths and task rates (`GET /api/monitoring/queues`), and the live workers
with the task runs they are running, named by pipeline, execution, stage and task (`GET /api/monitoring/workers`).

Queue depths and workers are global (a queue carries every project's work); the tasks a worker runs are shown only
for projects the caller's token sees.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api.auth import allow, principal
from api.serialize import timestamp
from api.services import services
from orchestrator import monitoring
from orchestrator.policy import Action
from orchestrator.queues import QUEUES
from orchestrator.schema import now
from workers import inspection

blueprint = Blueprint("monitoring", __name__, url_prefix="/monitoring")


@blueprint.get("/queues")
@allow(Action.READ)
def queues() -> Response:
    stamp = now()
    depths = inspection.queue_depths(services().celery, QUEUES)
    with services().store.engine.connect() as conn:
        held = monitoring.held(conn, stamp)
        running = monitoring.running(conn)
        recent = monitoring.recent_runs(conn, monitoring.window_start(stamp))
    return jsonify(
        {
            "at": timestamp(stamp),
            "queues": [
                {"name": name, "depth": depths[name], "waiting": held.get(name, 0), "active": running.get(name, 0)}
                for name in QUEUES
            ],
            "throughput": [
                {
                    "at": timestamp(minute.at),
                    "started": minute.started,
                    "finished": minute.finished,
                    "failed": minute.failed,
                }
                for minute in monitoring.throughput(recent, stamp)
            ],
        }
    )


@blueprint.get("/workers")
@allow(Action.READ)
def workers() -> Response:
    stamp = now()
    reports = inspection.workers(services().celery)
    ids = [task.task_run_id for report in reports for task in report.active]
    with services().store.engine.connect() as conn:
        named = monitoring.active_runs(conn, ids)
    caller = principal()
    shown = {run_id: run for run_id, run in named.items() if caller.sees(run.project)}
    return jsonify({"at": timestamp(stamp), "workers": [_worker(report, shown) for report in reports]})


def _worker(report: inspection.WorkerReport, runs: dict[str, monitoring.ActiveRun]) -> dict[str, Any]:
    return {
        "name": report.name,
        "queues": list(report.queues),
        "pool": {"implementation": report.pool, "max": report.max_concurrency},
        "processed": report.processed,
        "active": [_task(runs[task.task_run_id]) for task in report.active if task.task_run_id in runs],
    }


def _task(run: monitoring.ActiveRun) -> dict[str, Any]:
    return {
        "pipeline": run.pipeline,
        "executionId": run.execution_id,
        "executionIndex": run.index,
        "stage": run.stage,
        "task": run.task,
        "type": run.type,
        "startedAt": timestamp(run.started_at),
    }
