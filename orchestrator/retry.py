"""Retry backoff: how long to wait before asking a busy or unreachable system again, and when to stop asking.

Pure arithmetic over times the caller passes in, so every executor that retries by answering Waiting waits the same
way and tests need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_BUDGET = 120.0  # seconds a streak of failures is retried: longer than a control-plane restart takes
RETRY_AFTER_CAP = 60.0  # seconds at most that a server's Retry-After may hold one retry back


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff bounded by time: `base` seconds before the first retry, doubling each time, never above
    `cap`, for as long as less than `budget` seconds have passed since the first failure of the streak.

    Bounded by time rather than by count, so a slow failure (a connect timeout) and a fast one (connection refused)
    both get the same window in which to recover. A server's Retry-After is honoured up to `retry_after_cap`, so a
    confused server cannot park a task for an hour.
    """

    base: float = 0.5
    cap: float = 15.0
    budget: float = RETRY_BUDGET
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """The wait before retry number `retry` (1 for the first): 0.5, 1, 2, 4, ... seconds, capped, or longer
        when the server asked for a longer wait with Retry-After."""
        if retry < 1:
            raise ValueError(f"retries are counted from 1, not {retry}")
        # The exponent is bounded first: 2**retry of a large count would be a huge float for nothing.
        backoff = min(self.cap, self.base * 2.0 ** min(retry - 1, 64))
        if retry_after is None:
            return backoff
        return max(backoff, min(max(retry_after, 0.0), self.retry_after_cap))

    def wait(self, retry: int, elapsed: float, retry_after: float | None = None) -> float | None:
        """The wait before retry number `retry`, `elapsed` seconds after the streak's first failure; None when the
        budget is spent and the last error is final.

        Never waits past the budget's end: the last retry happens as the budget runs out, not after it.
        """
        remaining = self.budget - max(elapsed, 0.0)
        if remaining <= 0:
            return None
        return min(self.delay(retry, retry_after), remaining)
