"""The dashboard's charts as geometry for server-side SVG: a horizontal stacked bar of counts, and columns of
executions per day stacked by outcome. Shapes only; every label is text in the page, so it stays readable however
far an SVG is stretched or shrunk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.deliveries import Day, Outcome

# Code Stream's colours, named as the badges' classes in rollway.css.
OUTCOME_TONES = {
    Outcome.DELIVERED: "ok",
    Outcome.FAILED: "bad",
    Outcome.CANCELED: "idle",
    Outcome.UNFINISHED: "run",
}
BAR_WIDTH = 100.0
COLUMN_PITCH = 10.0
COLUMN_WIDTH = 7.0
CHART_HEIGHT = 40.0


@dataclass(frozen=True)
class Segment:
    """One part of the stacked bar, in percent of its width."""

    label: str
    tone: str
    count: int
    x: float
    width: float


@dataclass(frozen=True)
class Block:
    """One outcome's part of one day's column."""

    outcome: Outcome
    tone: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Column:
    """One day: where its column stands, its blocks bottom up, and what it says in words."""

    x: float
    label: str
    blocks: list[Block]
    text: str


@dataclass(frozen=True)
class DayChart:
    """Columns of executions per day; `peak` is the tallest day's count."""

    width: float
    height: float
    column_width: float
    columns: list[Column]
    peak: int
    text: str


def stacked_bar(parts: Sequence[tuple[str, str, int]]) -> list[Segment]:
    """Segments of (label, tone, count) parts side by side, each as wide as its share; empty parts are left out."""
    total = sum(count for _label, _tone, count in parts)
    segments: list[Segment] = []
    x = 0.0
    for label, tone, count in parts:
        if count <= 0:
            continue
        width = BAR_WIDTH * count / total
        segments.append(Segment(label, tone, count, round(x, 3), round(width, 3)))
        x += width
    return segments


def day_chart(days: Sequence[Day]) -> DayChart:
    """Columns of `days`, scaled so the busiest day fills the height."""
    peak = max((day.total for day in days), default=0)
    scale = CHART_HEIGHT / peak if peak else 0.0
    columns = [_column(index, day, scale) for index, day in enumerate(days)]
    busy = [column.text for column in columns if not column.text.endswith(": none")]
    text = f"executions per day, {days[0].day:%d %b} to {days[-1].day:%d %b}" if days else "no days"
    text += ": " + ("; ".join(busy) if busy else "none")
    return DayChart(COLUMN_PITCH * len(days), CHART_HEIGHT, COLUMN_WIDTH, columns, peak, text)


def _column(index: int, day: Day, scale: float) -> Column:
    blocks: list[Block] = []
    top = CHART_HEIGHT
    for outcome, tone in OUTCOME_TONES.items():
        count = day.outcomes.get(outcome, 0)
        if count:
            height = count * scale
            top -= height
            blocks.append(Block(outcome, tone, count, round(top, 3), round(height, 3)))
    said = ", ".join(f"{block.count} {block.outcome.value}" for block in blocks) or "none"
    x = index * COLUMN_PITCH + (COLUMN_PITCH - COLUMN_WIDTH) / 2
    label = f"{day.day:%d %b}"
    return Column(x, label, blocks, f"{label}: {said}")
