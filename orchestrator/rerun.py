"""Reruns: a new execution of an ended one's pipeline with the input it was given (`POST .../rerun`).

Pure decisions over the recorded execution; the API loads the pipeline and triggers it as any run.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import Conflict, Problem
from orchestrator.execution import Execution
from orchestrator.redaction import MASK, holds_mask


def rerun_input(execution: Execution) -> dict[str, Any]:
    """The input a rerun of `execution` starts with: the one it was recorded with.

    Conflict (409) while it has not ended, and when an input was recorded with a secret masked out of it (a
    rollback's input bound to a secret variable is): the value itself was never kept, and a rerun must not send
    the mask in its place. Such a run is started anew with the values given again.
    """
    if not execution.status.is_terminal:
        raise Conflict(
            f"execution #{execution.index} of '{execution.pipeline_name}' is {execution.status}: only an ended "
            "execution can be rerun"
        )
    masked = sorted(name for name, value in execution.input.items() if holds_mask(value))
    if masked:
        names = ", ".join(f"'{name}'" for name in masked)
        raise Conflict(
            f"execution #{execution.index} cannot be rerun: input {names} was recorded with a secret masked out "
            f"({MASK}), so its value is not kept; start a new run and give it again",
            [Problem(f"input.{name}", "was recorded masked") for name in masked],
        )
    return dict(execution.input)


def rerun_comments(execution: Execution) -> str:
    """The comments of a rerun: which run it repeats."""
    return f"rerun of #{execution.index}"
