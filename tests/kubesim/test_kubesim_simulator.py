"""The emulator's lifecycle: a stop is the API server going down, a start after it is the same cluster back."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api

from kubesim import KubeSim

from kubesim_support import deployment, rolled_out, wait_until


def test_a_restart_comes_back_on_the_same_port_with_the_same_objects(
    sim: KubeSim, core: CoreV1Api, apps: AppsV1Api, namespace: str
) -> None:
    # Given a cluster with a ConfigMap
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"mode": "blue"}})
    url = sim.url

    # When its API server is stopped and started again
    sim.stop()
    sim.start()

    # Then it serves at the same URL, and still has the ConfigMap
    assert sim.url == url
    assert core.read_namespaced_config_map("settings", namespace).data == {"mode": "blue"}

    # And its controllers run again: a new Deployment rolls out
    apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25", replicas=1))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout after the restart")


def test_a_stopped_server_answers_nothing_even_on_a_kept_alive_connection(sim: KubeSim) -> None:
    # Given a client connection that has had an answer and is kept alive
    address = urlsplit(sim.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
    connection.request("GET", "/healthz")
    first = connection.getresponse()
    first.read()
    assert first.status == 200

    # When the server is stopped
    sim.stop()

    # Then the kept connection is dropped without an answer, and a new one is refused
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.request("GET", "/healthz")
        connection.getresponse()
    connection.close()
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection(address.hostname or "", address.port, timeout=5).connect()
