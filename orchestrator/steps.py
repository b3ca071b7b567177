"""What the engine's parts share: the effects a step leaves to do once it commits, and the base each part builds on.

The `Engine` (`engine.py`) is made of parts, one concern each: holding task runs for a person's answer
(`holds.py`), control of executions and the nested executions of Pipeline tasks (`control.py`), and rollbacks
(`rollbacks.py`). `Steps` declares what they read and the few steps they call on each other; the part that owns a
step defines it, and `Engine` combines them all.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from orchestrator.execution import Execution, ExecutionState
from orchestrator.outbox import Dispatch
from orchestrator.pipeline import TaskKey
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store
from orchestrator.transaction import Transaction
from orchestrator.useroperations import UserOperation
from orchestrator.variables import ProjectVariables

# Every part logs under the engine's one name, as before it was split: operators filter on it, and a worker's
# redaction filter masks secrets in its records (`workers/logredaction.py`).
log = logging.getLogger("orchestrator.engine")


@dataclass
class Effects:
    """What a committed step leaves to do: messages to send, executions that just ended, and other executions'
    approvals a newer one superseded (`cancelPreviousPendingUserOp`), with why."""

    dispatch: list[Dispatch] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    superseded: list[tuple[UserOperation, str]] = field(default_factory=list)


class Steps(ABC):
    """The base of the engine's parts: the store and horizon they read, and the steps they call on each other."""

    store: Store
    horizon: float

    @abstractmethod
    def _advance(self, tx: Transaction, state: ExecutionState, effects: Effects) -> None:
        """Start whatever is ready in an execution, or complete it, in this step (`engine.py`)."""

    @abstractmethod
    def _variables(self, tx: Transaction, project: str) -> ProjectVariables:
        """The project's variables for a binding scope, read in this step's transaction (`engine.py`)."""

    @abstractmethod
    def _follow_up(self, effects: Effects) -> None:
        """Do what a committed step left to do: send, settle what ended, cancel what was superseded (`engine.py`)."""

    @abstractmethod
    def _on_failure(self, tx: Transaction, state: ExecutionState, key: TaskKey, message: str, effects: Effects) -> None:
        """A task failed: go on (ignoreFailure), roll the execution back, or fail it, in this step (`rollbacks.py`)."""

    @abstractmethod
    def _control_nested(
        self, tx: Transaction, execution: Execution, new: ExecutionStatus, *, why: str, actor: str, effects: Effects
    ) -> None:
        """Cancel or pause an execution's nested executions that allow it, in this step (`control.py`)."""


def describe(key: TaskKey) -> str:
    """A task as messages name it: `stage.task`."""
    return f"{key[0]}.{key[1]}"


def named(execution: Execution) -> str:
    """An execution as messages name it: `pipeline #index`."""
    return f"{execution.pipeline_name} #{execution.index}"
