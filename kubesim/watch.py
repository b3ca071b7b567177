"""Watch events and subscriptions: what the store publishes, how one watcher filters it, and its wire encoding."""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field

from kubesim.objects import labels_of, namespace_of
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.status import JsonObject


@dataclass(frozen=True)
class Event:
    """One change in the store; ``previous`` is the object before a modification, for selector transitions."""

    type: str  # ADDED, MODIFIED or DELETED
    resource: str
    resource_version: int
    obj: JsonObject
    previous: JsonObject | None = None


_CLOSED = Event("CLOSED", "", 0, {})


class Subscription:
    """A watcher's queue of events for one resource; the store offers, the serving thread takes."""

    def __init__(self, resource: str, backlog: list[Event], version: int = 0):
        self.resource = resource
        self.backlog_size = len(backlog)
        self.version = version  # the store's resourceVersion when the subscription began
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._closed = False
        for event in backlog:
            self._queue.put(event)

    def offer(self, event: Event) -> None:
        """Queue an event; never blocks, so the store can publish while holding its lock."""
        if not self._closed:
            self._queue.put(event)

    def next(self, timeout: float) -> Event | None:
        """The next event, or ``None`` when ``timeout`` passes first or the subscription is closed."""
        if self._closed and self._queue.empty():
            return None
        try:
            event = self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        return None if event is _CLOSED else event

    def close(self) -> None:
        """End the subscription; a blocked ``next`` returns ``None``."""
        self._closed = True
        self._queue.put(_CLOSED)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed


@dataclass(frozen=True)
class WatchFilter:
    """A watcher's namespace and selectors; objects moving across a selector appear as ADDED or DELETED."""

    namespace: str | None = None
    label_selector: LabelSelector = field(default_factory=LabelSelector)
    field_selector: FieldSelector = field(default_factory=FieldSelector)

    def matches(self, obj: JsonObject) -> bool:
        """Whether ``obj`` is in this watcher's view."""
        if self.namespace and namespace_of(obj) != self.namespace:
            return False
        return self.label_selector.matches(labels_of(obj)) and self.field_selector.matches(obj)

    def translate(self, event: Event) -> str | None:
        """The event type this watcher sees for ``event``, or ``None`` when it sees nothing."""
        now_in = self.matches(event.obj)
        if event.type != "MODIFIED":
            return event.type if now_in else None
        was_in = event.previous is not None and self.matches(event.previous)
        if now_in:
            return "MODIFIED" if was_in else "ADDED"
        return "DELETED" if was_in else None


def encode(event_type: str, obj: JsonObject) -> bytes:
    """One line of a watch stream."""
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"
