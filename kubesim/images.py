"""Which container images the emulated cluster cannot pull and which crash: glob patterns, changeable at runtime."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable


class ImagePolicy:
    """Thread-safe lists of image patterns (``fnmatch`` globs such as ``nginx:bad*``)."""

    def __init__(self, unpullable: Iterable[str] = (), crashing: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._unpullable = tuple(unpullable)
        self._crashing = tuple(crashing)

    def set(self, unpullable: Iterable[str] | None = None, crashing: Iterable[str] | None = None) -> None:
        """Replace either list; ``None`` keeps it."""
        with self._lock:
            if unpullable is not None:
                self._unpullable = tuple(unpullable)
            if crashing is not None:
                self._crashing = tuple(crashing)

    def snapshot(self) -> dict[str, list[str]]:
        """The current lists, as the admin route reports them."""
        with self._lock:
            return {"unpullable": list(self._unpullable), "crashing": list(self._crashing)}

    def unpullable(self, image: str) -> bool:
        """Whether pulling ``image`` fails."""
        with self._lock:
            return _matches(image, self._unpullable)

    def crashing(self, image: str) -> bool:
        """Whether ``image`` exits right after starting."""
        with self._lock:
            return _matches(image, self._crashing)

    def healthy(self, image: str) -> bool:
        """Whether ``image`` can be pulled and keeps running."""
        return not self.unpullable(image) and not self.crashing(image)


def _matches(image: str, patterns: tuple[str, ...]) -> bool:
    return any(image == pattern or fnmatch.fnmatchcase(image, pattern) for pattern in patterns)
