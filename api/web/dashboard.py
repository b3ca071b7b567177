"""The Dashboard page: per pipeline, how its executions of a period ended (counts, success rate), Code Stream's
delivery metrics (MTTD, MTBD, MTTF, MTTR) and executions per day, as SVG drawn on the server.

It reads the store's executions of the projects the viewer sees (`visible_project`), like the API's lists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import render_template, request

from api import pipelines as api_pipelines
from api.auth import allow, visible_project
from api.services import services
from api.web.blueprint import BADGES, blueprint, human_seconds
from api.web.charts import OUTCOME_TONES, DayChart, Segment, day_chart, stacked_bar
from orchestrator.deliveries import Deliveries, Outcome, deliveries, outcome_of, per_day
from orchestrator.deliveryqueries import PipelineKey, runs_between
from orchestrator.errors import BadRequest
from orchestrator.policy import Action
from orchestrator.status import ExecutionStatus

PERIODS = {
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}
DEFAULT_PERIOD = "7d"
METRICS = (
    ("mttd", "MTTD", "mean time to delivery: how long a successful execution takes"),
    ("mtbd", "MTBD", "mean time between deliveries: the gap between successful executions"),
    ("mttf", "MTTF", "mean time to failure: from a successful delivery to the next failed one"),
    ("mttr", "MTTR", "mean time to recovery: from a failed delivery to the next successful one"),
)


@dataclass(frozen=True)
class Metric:
    """One delivery metric as the card shows it."""

    key: str
    label: str
    meaning: str
    value: str | None


@dataclass(frozen=True)
class Card:
    """One pipeline's part of the dashboard."""

    project: str
    pipeline: str
    figures: Deliveries
    rate: str | None
    rate_basis: str
    bar: list[Segment]
    bar_text: str
    metrics: list[Metric]
    days: DayChart


def _period(given: str | None) -> str:
    period = given or DEFAULT_PERIOD
    if period not in PERIODS:
        choices = ", ".join(f"'{key}' ({label})" for key, (label, _span) in PERIODS.items())
        raise BadRequest(f"period '{period}' is not one of {choices}")
    return period


def _card(key: PipelineKey, figures: Deliveries, days: DayChart) -> Card:
    parts = [(status.value, BADGES[status.value], figures.counts.get(status, 0)) for status in ExecutionStatus]
    bar = stacked_bar(parts)
    said = ", ".join(f"{segment.count} {segment.label}" for segment in bar)
    rate = None if figures.success_rate is None else f"{round(figures.success_rate * 100)}%"
    outcomes = Counter(outcome_of(status) for status, count in figures.counts.items() for _ in range(count))
    ended = outcomes[Outcome.DELIVERED] + outcomes[Outcome.FAILED]
    basis = f"{outcomes[Outcome.DELIVERED]} of {ended} delivered" if ended else "none has ended"
    metrics = [Metric(name, label, meaning, _human(getattr(figures, name))) for name, label, meaning in METRICS]
    text = f"{figures.total} executions: {said}"
    return Card(key.project, key.name, figures, rate, basis, bar, text, metrics, days)


def _human(span: timedelta | None) -> str | None:
    if span is None:
        return None
    seconds = span.total_seconds()
    # Whole seconds would show a quick pipeline's sub-second runs as "0s", as if they took no time.
    return f"{seconds:.1f}s" if seconds < 10 else human_seconds(seconds)


@blueprint.get("/dashboard")
@allow(Action.READ)
def dashboard() -> str:
    period = _period(request.args.get("period"))
    pipeline = request.args.get("pipeline") or None
    until = datetime.now(UTC)
    since = until - PERIODS[period][1]
    found = runs_between(services().store.engine, since, until, visible_project(None), pipeline)
    cards = [_card(key, deliveries(runs), day_chart(per_day(runs, since, until))) for key, runs in found.items()]
    names: list[Any] = sorted({row["name"] for row in api_pipelines.list_().get_json()})
    return render_template(
        "dashboard.html",
        cards=cards,
        period=period,
        periods=PERIODS,
        pipeline=pipeline or "",
        pipelines=names,
        since=since,
        until=until,
        outcome_tones=OUTCOME_TONES,
    )
