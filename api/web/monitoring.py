"""The Monitoring page, Flower-style: each queue's depth (and what waits in it for later), each worker with its
queues, pool, active tasks as pipeline / stage / task and processed count, and the task rate of the last 30 minutes;
the panel refreshes itself every few seconds.

It reads `GET /api/monitoring/queues` and `/workers` through their handlers, so it shows what the API does.
"""

from __future__ import annotations

from typing import Any

from flask import render_template

from api import monitoring as api_monitoring
from api.auth import allow
from api.web.blueprint import blueprint
from orchestrator.policy import Action

REFRESH_SECONDS = 3
CHART_WIDTH = 600
CHART_HEIGHT = 120


def rate_chart(throughput: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars per minute (finished, failed) scaled to the chart, with the totals as the chart's text."""
    peak = max([1, *(point["finished"] + point["failed"] for point in throughput)])
    width = CHART_WIDTH / max(1, len(throughput))
    bars = []
    for position, point in enumerate(throughput):
        failed = CHART_HEIGHT * point["failed"] / peak
        finished = CHART_HEIGHT * point["finished"] / peak
        bars.append(
            {
                "x": round(position * width + 1, 1),
                "width": round(max(1.0, width - 2), 1),
                "failed": round(failed, 1),
                "finished": round(finished, 1),
                "at": point["at"],
                "point": point,
            }
        )
    return {
        "bars": bars,
        "peak": peak,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "started": sum(point["started"] for point in throughput),
        "finished": sum(point["finished"] for point in throughput),
        "failed": sum(point["failed"] for point in throughput),
    }


def _panel() -> dict[str, Any]:
    queues: dict[str, Any] = api_monitoring.queues().get_json()
    workers: dict[str, Any] = api_monitoring.workers().get_json()
    deepest = max([1, *(queue["depth"] + queue["waiting"] for queue in queues["queues"])])
    return {"queues": queues, "workers": workers, "deepest": deepest, "chart": rate_chart(queues["throughput"])}


@blueprint.get("/monitoring")
@allow(Action.READ)
def monitoring() -> str:
    return render_template("monitoring.html", panel=_panel(), every=REFRESH_SECONDS)


@blueprint.get("/monitoring/panel")
@allow(Action.READ)
def monitoring_panel() -> str:
    """The panel alone: what the page swaps in on each refresh."""
    return render_template("_monitoring_panel.html", panel=_panel())
