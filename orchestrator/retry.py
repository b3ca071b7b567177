"""Retry backoff: how long to wait before asking a busy or unreachable system again.

Pure arithmetic, so every executor that retries by answering Waiting waits the same way and tests need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `base` seconds before the first retry, doubling each time, never above `cap`.

    `limit` is how many retries are allowed before the last error is final.
    """

    base: float = 0.5
    cap: float = 30.0
    limit: int = 5

    def delay(self, retry: int) -> float:
        """The wait before retry number `retry` (1 for the first): 0.5, 1, 2, 4, ... seconds, capped."""
        if retry < 1:
            raise ValueError(f"retries are counted from 1, not {retry}")
        # The exponent is bounded first: 2**retry of a large count would be a huge float for nothing.
        return min(self.cap, self.base * 2.0 ** min(retry - 1, 64))

    def allows(self, retry: int) -> bool:
        """Whether retry number `retry` may still happen."""
        return retry <= self.limit
