"""The Condition task: an expression over the execution's bindings; false fails the task."""

from __future__ import annotations

from orchestrator import expressions
from orchestrator.errors import BindingError, ExpressionError
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall


class ConditionExecutor:
    """Runs Condition tasks."""

    def execute(self, call: TaskCall) -> Outcome:
        condition = str(call.input.get("condition", ""))
        try:
            result = expressions.check(condition, call.lookup)
        except (ExpressionError, BindingError) as error:
            return Failed(f"condition {condition!r} could not be evaluated: {error.message}", {"result": None})
        if not result:
            return Failed(f"condition {condition!r} is false", {"result": False})
        return Succeeded({"result": True})
