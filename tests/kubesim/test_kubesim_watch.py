"""Watches over chunked HTTP, as ``kubernetes.watch.Watch().stream`` consumes them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from kubesim import KubeSim


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": "1"}}


def events(core: CoreV1Api, namespace: str, **kwargs: Any) -> list[tuple[str, str]]:
    """Every ``(type, name)`` a bounded watch of configmaps delivers."""
    stream = watch.Watch().stream(core.list_namespaced_config_map, namespace, **kwargs)
    return [(event["type"], event["object"].metadata.name) for event in stream]


def test_watch_replays_events_after_a_resource_version(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap that existed before the version we watch from, then changes after it
    core.create_namespaced_config_map(namespace, configmap("old"))
    since = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, configmap("new"))
    core.patch_namespaced_config_map("new", namespace, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("old", namespace)

    # When watching from that version with a short timeout
    seen = events(core, namespace, resource_version=since, timeout_seconds=1)

    # Then exactly the later changes arrive, in order
    assert seen == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old")]


def test_watch_without_version_starts_with_the_current_state(core: CoreV1Api, namespace: str) -> None:
    # Given two configmaps
    core.create_namespaced_config_map(namespace, configmap("a"))
    core.create_namespaced_config_map(namespace, configmap("b"))

    # When watching without a resourceVersion
    seen = events(core, namespace, timeout_seconds=1)

    # Then each existing object arrives as ADDED
    assert seen == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_label_selector_reports_objects_entering_and_leaving(core: CoreV1Api, namespace: str) -> None:
    # Given a version to watch from
    since = core.list_namespaced_config_map(namespace).metadata.resource_version

    # When a configmap is created outside the selector, relabelled into it, changed, then relabelled out of it
    core.create_namespaced_config_map(namespace, configmap("cm", team="blue"))
    core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"team": "red"}}})
    core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "2"}})
    core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"team": "green"}}})
    seen = events(core, namespace, resource_version=since, timeout_seconds=1, label_selector="team=red")

    # Then the watcher saw it appear, change and disappear
    assert seen == [("ADDED", "cm"), ("MODIFIED", "cm"), ("DELETED", "cm")]


def test_watch_streams_live_events_until_stopped(core: CoreV1Api, namespace: str) -> None:
    # Given a watch running in the background
    since = core.list_namespaced_config_map(namespace).metadata.resource_version
    watcher = watch.Watch()
    received: list[str] = []
    started = threading.Event()

    def consume() -> None:
        started.set()
        for event in watcher.stream(
            core.list_namespaced_config_map, namespace, resource_version=since, timeout_seconds=30
        ):
            received.append(event["object"].metadata.name)
            if len(received) == 2:
                watcher.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    started.wait()

    # When objects are created while it streams
    core.create_namespaced_config_map(namespace, configmap("one"))
    core.create_namespaced_config_map(namespace, configmap("two"))
    thread.join(timeout=30)

    # Then the events arrived live
    assert received == ["one", "two"]


@pytest.fixture
def forgetful() -> Iterator[KubeSim]:
    """An emulator that keeps only a few events of history."""
    with KubeSim(ready_delay=0.05, history_limit=3) as running:
        yield running


def test_watch_from_a_compacted_version_is_gone(forgetful: KubeSim) -> None:
    # Given more changes than the emulator remembers
    client = ApiClient(Configuration(host=forgetful.url))
    core = CoreV1Api(client)
    since = core.list_namespace().metadata.resource_version
    for index in range(5):
        core.create_namespace({"metadata": {"name": f"ns{index}"}})

    # When watching from the old version
    with pytest.raises(ApiException) as raised:
        list(watch.Watch().stream(core.list_namespace, resource_version=since, timeout_seconds=1))

    # Then the watch fails with 410 Expired, as a real server's ERROR event says
    assert raised.value.status == 410
    assert "Expired" in str(raised.value.reason)
    client.close()


def test_many_open_watches_do_not_block_requests(core: CoreV1Api, namespace: str) -> None:
    # Given several idle watches held open by raw streaming requests
    responses = [
        core.list_namespaced_config_map(namespace, watch=True, timeout_seconds=30, _preload_content=False)
        for _ in range(8)
    ]

    # When ordinary requests are made
    core.create_namespaced_config_map(namespace, configmap("still-served"))
    names = [item.metadata.name for item in core.list_namespaced_config_map(namespace).items]

    # Then they are served
    assert names == ["still-served"]
    for response in responses:
        response.close()
