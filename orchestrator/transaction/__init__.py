"""Writes to executions and task runs, inside one database transaction.

The engine does each step of an execution (a task finished, a task failed, a run was triggered) in one
`Transaction` that first locks the execution's row, so concurrent steps of the same execution happen one
after the other and each sees what the previous one committed. Status changes are also conditional
UPDATEs (`WHERE status IN (...)`, from the transition table): a change that is no longer allowed simply
does not happen, and the caller learns it from the return value.

`Transaction` is one class built from a part per concept, each in its own module here: `base` (the connection,
its reads, events and notifications), `taskruns` (the run-state moves), `executions` (inserts, transitions,
slots, relations) and `sweepqueries` (what the sweep looks for); `rows` maps rows to records and `statements`
holds the statements built once. The names callers import from here stay importable from here.
"""

from __future__ import annotations

from orchestrator.transaction.executions import ExecutionMoves
from orchestrator.transaction.rows import (
    CHILD_COLUMNS,
    CHILD_FIELDS,
    EVENT_FIELDS,
    EXECUTION_COLUMNS,
    HOLDS_SLOT,
    IN_PROGRESS,
    OPEN_RUNS,
    ROLLING_BACK_RELATIONS,
    RUNS_TASKS,
    SUMMARY_COLUMNS,
    TERMINAL,
    child_from_row,
    event_from_row,
    execution_from_row,
    new_id,
    pipeline_from_row,
    run_event,
    task_run_from_row,
)
from orchestrator.transaction.statements import RunChange, run_change
from orchestrator.transaction.sweepqueries import SweepQueries

__all__ = [
    "CHILD_COLUMNS",
    "CHILD_FIELDS",
    "EVENT_FIELDS",
    "EXECUTION_COLUMNS",
    "HOLDS_SLOT",
    "IN_PROGRESS",
    "OPEN_RUNS",
    "ROLLING_BACK_RELATIONS",
    "RUNS_TASKS",
    "SUMMARY_COLUMNS",
    "TERMINAL",
    "RunChange",
    "Transaction",
    "child_from_row",
    "event_from_row",
    "execution_from_row",
    "new_id",
    "pipeline_from_row",
    "run_change",
    "run_event",
    "task_run_from_row",
]


class Transaction(ExecutionMoves, SweepQueries):
    """Reads and conditional writes on one connection inside one transaction.

    Every status change it makes is also recorded as an event; the events are written in one statement when
    `flush_events` runs, which the store does just before it commits.
    """
