"""What the command line prints: tables, JSON or YAML of API answers, an execution described, its history as log
lines. Pure functions of the API's answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.decoding import dump_yaml_documents

Row = dict[str, Any]
OUTPUTS = ("table", "json", "yaml")
# The old table's cut, which the demo's printed table (and the README showing it) keeps.
MESSAGE_WIDTH = 90
SHORT_ID = 8
EXECUTION_COLUMNS = ("PIPELINE", "#", "STATUS", "ROLLBACK OF", "ID", "MESSAGE")
WIDE_EXECUTION_COLUMNS = ("PIPELINE", "PROJECT", "#", "STATUS", "ROLLBACK OF", "ID", "CREATED", "MESSAGE")
# An endpoint's `has...` flags as `rollway endpoints list` names them.
CREDENTIAL_FLAGS = (
    ("token", "hasToken"),
    ("ca", "hasCaData"),
    ("kubeconfig", "hasKubeconfig"),
    ("password", "hasPassword"),
    ("insecure", "insecure"),
    ("restricted", "restricted"),
)


def clip(text: str | None, width: int | None) -> str:
    """`text` on one line, cut to `width` characters (None: whole)."""
    flat = " ".join((text or "").split())
    return flat if width is None else flat[:width]


def table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """An aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=False)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )


def structured(value: object, output: str) -> str:
    """JSON or YAML text of an API answer, as given."""
    if output == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    return dump_yaml_documents([value]).rstrip("\n")


def shown(rows: list[Row], output: str, as_table: Callable[[list[Row]], str]) -> str:
    """Rows as `output` says: a table, or the API's answer in JSON or YAML."""
    return as_table(rows) if output == "table" else structured(rows, output)


def _short(value: str | None, wide: bool) -> str:
    return (value or "") if wide else (value or "")[:SHORT_ID]


def executions_table(rows: list[Row], wide: bool = False) -> str:
    """The executions as a table: for a rollback its comments (what it rolls back), else the status message;
    cut to MESSAGE_WIDTH unless `wide`, which also shows whole ids, the project and when each was created."""
    width = None if wide else MESSAGE_WIDTH

    def cells(row: Row) -> dict[str, str]:
        return {
            "PIPELINE": row["pipeline"],
            "PROJECT": row.get("project") or "",
            "#": str(row["index"]),
            "STATUS": row["status"],
            "ROLLBACK OF": _short(row["rollbackOf"], wide),
            "ID": _short(row["id"], wide),
            "CREATED": row.get("createdAt") or "",
            "MESSAGE": clip(row["comments"] if row["rollback"] else row["statusMessage"], width),
        }

    header = WIDE_EXECUTION_COLUMNS if wide else EXECUTION_COLUMNS
    return table(header, [[cells(row)[column] for column in header] for row in rows])


def pipelines_table(rows: list[Row]) -> str:
    header = ["PROJECT", "NAME", "ENABLED", "STAGES", "ID", "UPDATED"]
    lines = [
        [
            row["project"],
            row["name"],
            "yes" if row.get("enabled") else "no",
            ",".join(row.get("stageOrder") or []),
            row["id"],
            row.get("updatedAt") or "",
        ]
        for row in rows
    ]
    return table(header, lines)


def endpoints_table(rows: list[Row]) -> str:
    header = ["PROJECT", "NAME", "TYPE", "URL", "CREDENTIALS", "LAST PROBE", "ID"]
    lines = [
        [row["project"], row["name"], row["type"], row.get("url") or "", credentials(row), _probe(row), row["id"]]
        for row in rows
    ]
    return table(header, lines)


def credentials(row: Row) -> str:
    """Which credentials an endpoint holds, and how it is checked, as `token,ca,insecure` (never the values)."""
    return ",".join(name for name, flag in CREDENTIAL_FLAGS if row.get(flag)) or "-"


def _probe(row: Row) -> str:
    probe = row.get("probe")
    if not probe:
        return "never"
    return f"{'ok' if probe.get('ok') else 'failed'} {probe.get('at') or ''}".strip()


# -- one execution


def log_line(event: Row) -> str:
    """One entry of an execution's history as a log line: when, status (from what), where, message, who."""
    where = ".".join(part for part in (event.get("stage"), event.get("task")) if part) or "execution"
    change = event.get("status") or ""
    if event.get("previous"):
        change = f"{event['previous']} -> {change}"
    actor = f" (by {event['actor']})" if event.get("actor") else ""
    message = f": {clip(event.get('message'), None)}" if event.get("message") else ""
    return f"{event.get('at') or ''}  {where}  {change}{message}{actor}"


def _pairs(values: object) -> str:
    if not isinstance(values, dict) or not values:
        return "-"
    return ", ".join(
        f"{name}={json.dumps(value) if not isinstance(value, str) else value}" for name, value in values.items()
    )


def description(execution: Row, events: list[Row]) -> str:
    """An execution described: header, stages and tasks in order with their status, times, attempts and errors,
    its rollback and child links, then its history."""
    lines = [
        f"Execution:  {execution['pipeline']} #{execution['index']}  {execution['id']}",
        f"Project:    {execution.get('project') or ''}",
        f"Status:     {execution['status']}"
        + (f"  {execution['statusMessage']}" if execution.get("statusMessage") else ""),
        f"Comments:   {execution.get('comments') or '-'}",
        f"Requested:  {execution.get('requestBy') or '-'}",
        f"Created:    {execution.get('createdAt') or '-'}",
        f"Started:    {execution.get('startedAt') or '-'}",
        f"Finished:   {execution.get('finishedAt') or '-'}",
        f"Input:      {_pairs(execution.get('input'))}",
        f"Output:     {_pairs(execution.get('output'))}",
    ]
    lines += _links(execution)
    lines += ["", "Stages:", *_stages(execution.get("stages") or [])]
    lines += ["", "History:", *(f"  {log_line(event)}" for event in events)]
    return "\n".join(lines)


def _links(execution: Row) -> list[str]:
    lines = []
    if execution.get("parentId"):
        lines.append(f"Parent:     {execution['parentId']} ({execution.get('relation') or 'child'})")
    if execution.get("rollbackOf"):
        lines.append(f"Rolls back: {execution['rollbackOf']}")
    if execution.get("rollbackExecutionId"):
        lines.append(f"Rollback:   {execution['rollbackExecutionId']}")
    for child in execution.get("children") or []:
        lines.append(
            f"Child:      {child['id']}  {child['pipeline']} #{child['index']}  {child['relation']}  {child['status']}"
        )
    return lines


def _stages(stages: list[Row]) -> list[str]:
    lines = []
    for stage in stages:
        lines.append(f"  {stage['name']}  {stage['status']}  {_times(stage)}".rstrip())
        for task in stage.get("tasks") or []:
            attempt = f"attempt {task.get('attempt')}" if task.get("attempt") else ""
            lines.append(f"    {task['name']}  {task['type']}  {task['status']}  {attempt}  {_times(task)}".rstrip())
            if task.get("statusMessage"):
                lines.append(f"      {task['statusMessage']}")
    return lines or ["  (none has run)"]


def _times(item: Row) -> str:
    started, finished = item.get("startedAt"), item.get("finishedAt")
    if not started:
        return ""
    return f"{started} -> {finished}" if finished else f"since {started}"
