"""A background thread per process, for the watchdog and the heartbeat.

Started on first need, and again in a child after a fork: a prefork worker forks after its parent may have
started one, and a forked child inherits the thread's bookkeeping but not the thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class ProcessThread:
    """Runs `target` in one daemon thread of the current process."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self._name = name
        self._lock = threading.Lock()
        self._pid = 0

    def ensure(self) -> None:
        """Start the thread unless this process already runs it."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                threading.Thread(target=self._target, name=self._name, daemon=True).start()
                self._pid = os.getpid()
