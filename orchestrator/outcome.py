"""How one attempt at a task run ended: what executors answer, and what the sweep reports for a lost worker.

The engine takes every outcome through one entry point (`Engine.task_finished`), so success, a wait, a failure
and a loss each make the same kind of recorded transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Succeeded:
    """The task is done; `output` is what later bindings can read."""

    output: Mapping[str, Any]


@dataclass(frozen=True)
class Waiting:
    """The task is not done yet: run it again after `countdown` seconds, handing it `state`."""

    countdown: float
    state: Mapping[str, Any]
    message: str = ""


@dataclass(frozen=True)
class Failed:
    """The task failed; `output` is kept so a rollback can still bind to what the task saw."""

    message: str
    output: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Lost:
    """The run's worker stopped renewing its lease: it died, lost its database, or its attempt hung."""

    worker: str


Outcome = Succeeded | Waiting | Failed | Lost
