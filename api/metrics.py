"""`GET /metrics`: Prometheus text, computed at each scrape from the database and the broker, so any number of API
processes answer alike (no in-process counters).

- `rollway_executions_total{project,pipeline,status}`: executions that reached each status;
- `rollway_rollbacks_total{project,pipeline,cause}`: executions rolled back, `cause` failure or manual;
- `rollway_task_duration_seconds{type}`: finished task runs, claim to end (histogram);
- `rollway_failure_to_rollback_seconds{project,pipeline}`: from the failure that started a rollback to its end;
- `rollway_queue_depth{queue}`: messages waiting in each queue of the broker;
- `rollway_workers`: workers that answered a ping.

It names pipelines and projects, so it takes a token like the API does (`Authorization: Bearer <token>`, any
role; Prometheus' `authorization: {credentials: ...}`) whenever ROLLWAY_API_TOKEN is set. A project's token sees
its own projects' pipelines; queues and workers are global. Without ROLLWAY_API_TOKEN it is open, like the API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from api.auth import public, require
from api.services import Services, services
from orchestrator import metrics
from orchestrator.policy import Action
from orchestrator.queues import QUEUES
from workers import inspection

log = logging.getLogger(__name__)

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@public  # outside /api: the view checks the token itself (`require`)
def scrape() -> Response:
    project = require(Action.READ).project
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RollwayCollector(services(), project))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class RollwayCollector(Collector):
    """Rollway's metrics for one scrape, kept to `project` (None: every project)."""

    def __init__(self, found: Services, project: str | None) -> None:
        self.services = found
        self.project = project

    def collect(self) -> Iterator[Metric]:
        with self.services.store.engine.connect() as conn:
            reached = metrics.executions_reached(conn, self.project)
            rolled = metrics.rollbacks(conn, self.project)
            durations = metrics.task_durations(conn, self.project)
            restores = metrics.failure_to_rollback(conn, self.project)
        yield _counter("rollway_executions", "Executions that reached each status.", "status", reached)
        yield _counter("rollway_rollbacks", "Executions rolled back, by what started the rollback.", "cause", rolled)
        tasks = HistogramMetricFamily(
            "rollway_task_duration_seconds", "Finished task runs, from claim to end.", labels=["type"]
        )
        for task_type, seconds in sorted(durations.items()):
            _observe(tasks, [task_type], metrics.histogram(seconds, metrics.TASK_DURATION_BUCKETS))
        yield tasks
        restore = HistogramMetricFamily(
            "rollway_failure_to_rollback_seconds",
            "From the failure that started a rollback to the rollback's end.",
            labels=["project", "pipeline"],
        )
        for (project, pipeline), seconds in sorted(restores.items()):
            _observe(restore, [project, pipeline], metrics.histogram(seconds, metrics.ROLLBACK_BUCKETS))
        yield restore
        yield from self._broker()

    def _broker(self) -> Iterator[Metric]:
        """Queue depths and live workers; left out (and logged) while the broker does not answer."""
        try:
            depths = inspection.queue_depths(self.services.celery, QUEUES)
            count = inspection.worker_count(self.services.celery)
        except Exception as error:  # kombu raises the transport's own errors
            log.warning("/metrics without queue depths and workers: the broker did not answer (%s)", error)
            return
        depth = GaugeMetricFamily("rollway_queue_depth", "Messages waiting in each queue.", labels=["queue"])
        for name in QUEUES:
            depth.add_metric([name], depths[name])
        yield depth
        yield GaugeMetricFamily("rollway_workers", "Workers that answered a ping.", value=count)


def _counter(name: str, documentation: str, label: str, counts: list[metrics.Count]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["project", "pipeline", label])
    for count in sorted(counts, key=lambda item: (item.project, item.pipeline, item.label)):
        family.add_metric([count.project, count.pipeline, count.label], count.value)
    return family


def _observe(family: HistogramMetricFamily, labels: list[str], found: metrics.Histogram) -> None:
    buckets = [("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in found.buckets]
    family.add_metric(labels, buckets, found.total)
