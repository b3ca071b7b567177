"""The object store: every object by resource, namespace and name, the global resourceVersion counter and a
bounded history of events that watches replay from."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from kubesim.objects import deep_copy, metadata, name_of, namespace_of
from kubesim.status import Expired, JsonObject
from kubesim.watch import Event, Subscription

Listener = Callable[[Event], None]


class Store:
    """Thread-safe in-memory storage; callers that need several steps to be atomic hold ``lock`` (reentrant)."""

    def __init__(self, history_limit: int = 2000):
        self.lock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], JsonObject]] = {}
        self._version = 0
        self._history: deque[Event] = deque(maxlen=history_limit)
        self._compacted = 0  # the resourceVersion of the newest event dropped from the history
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._listeners: list[Listener] = []

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        with self.lock:
            return self._version

    def get(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        """A copy of one object, or ``None``."""
        with self.lock:
            found = self._objects.get(resource, {}).get((namespace, name))
            return deep_copy(found) if found is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[JsonObject]:
        """Copies of every object of ``resource`` (in ``namespace`` when given), ordered by namespace and name."""
        with self.lock:
            items = self._objects.get(resource, {})
            keys = sorted(key for key in items if namespace is None or key[0] == namespace)
            return [deep_copy(items[key]) for key in keys]

    def put(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store ``obj`` under a new resourceVersion and publish ADDED or MODIFIED; returns the stored copy."""
        with self.lock:
            key = (namespace_of(obj), name_of(obj))
            previous = self._objects.get(resource, {}).get(key)
            self._version += 1
            stored = deep_copy(obj)
            metadata(stored)["resourceVersion"] = str(self._version)
            self._objects.setdefault(resource, {})[key] = stored
            self._publish(Event("ADDED" if previous is None else "MODIFIED", resource, self._version, stored, previous))
            return deep_copy(stored)

    def remove(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        """Delete one object and publish DELETED; returns its last state, stamped with the deletion's version."""
        with self.lock:
            found = self._objects.get(resource, {}).pop((namespace, name), None)
            if found is None:
                return None
            self._version += 1
            final = deep_copy(found)
            metadata(final)["resourceVersion"] = str(self._version)
            self._publish(Event("DELETED", resource, self._version, final))
            return deep_copy(final)

    def watch(self, resource: str, since: int | None) -> Subscription:
        """Subscribe to ``resource``.

        With ``since`` ``None`` the backlog is an ADDED event per existing object; otherwise it is every kept event
        newer than ``since``, or ``Expired`` when events after ``since`` were already dropped from the history.
        """
        with self.lock:
            if since is None:
                backlog = [
                    Event("ADDED", resource, int(obj["metadata"]["resourceVersion"]), obj)
                    for obj in self._objects.get(resource, {}).values()
                ]
                backlog.sort(key=lambda event: event.resource_version)
            else:
                if since < self._compacted:
                    raise Expired(f"too old resource version: {since} ({self._compacted + 1})")
                backlog = [e for e in self._history if e.resource == resource and e.resource_version > since]
            subscription = Subscription(resource, backlog, self._version)
            self._subscriptions.setdefault(resource, set()).add(subscription)
            return subscription

    def unwatch(self, subscription: Subscription) -> None:
        """Forget a subscription."""
        with self.lock:
            self._subscriptions.get(subscription.resource, set()).discard(subscription)
            subscription.close()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` (under the lock; it must not block) on every event."""
        with self.lock:
            self._listeners.append(listener)

    def close(self) -> None:
        """End every subscription, so streaming watches finish."""
        with self.lock:
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    subscription.close()
            self._subscriptions.clear()

    def _publish(self, event: Event) -> None:
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].resource_version
        self._history.append(event)
        for subscription in self._subscriptions.get(event.resource, ()):
            subscription.offer(event)
        for listener in self._listeners:
            listener(event)
