"""`rollway flower`: Flower on Rollway's broker, so that it finds the queues and workers under ROLLWAY_REDIS_PREFIX.

Flower is a Celery command; it is run here on Rollway's own Celery app, whose broker URL and transport options
(`global_keyprefix`) Flower reads for its queue lengths and its event stream. Flower is not a dependency of Rollway:
`pip install flower` next to it (2.2 is the version tested).

What Flower shows of Rollway: each task run's message is named `rollway.run_task[<pipeline> #<n> / <stage> /
<task>]`; an attempt that ran to a recorded outcome is SUCCESS whatever that outcome was (a failed task, an
`ignoreFailure` one, a POLL that asks again later), and its Result column says which: "succeeded", "failed",
"waiting" (asks again later), "lost" or "not run"; the task's own status is Rollway's, in the API and the UI.
Revoking a task from Flower never strands its execution: a revoked message that was not running is sent again by
the sweep a lease later; a terminated one is reclaimed by the sweep once its lease runs out (`sweep.py`), and runs
again or fails into its rollback like the task of a lost worker.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from orchestrator.errors import ConfigurationError
from orchestrator.settings import Settings
from workers.celery_app import make_celery

NOT_INSTALLED = "Flower is not installed here: run `pip install flower` (Rollway is tested with Flower 2.2)"


def installed() -> bool:
    return importlib.util.find_spec("flower") is not None


def run_flower(settings: Settings, args: Sequence[str]) -> int:
    """Run Flower on Rollway's broker with Flower's own options `args` (e.g. `--port=5555`) until it stops; its
    exit code. ConfigurationError when Flower is not installed."""
    if not installed():
        raise ConfigurationError(NOT_INSTALLED)
    code: object = make_celery(settings).start(["flower", *args])
    return int(code or 0)
