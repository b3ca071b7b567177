"""Fixtures for kubesim's own suite: an emulator per test and official-client APIs pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api

from kubesim import KubeSim

# Small enough to keep rollouts quick, large enough for several controller ticks per step.
READY_DELAY = 0.05


@pytest.fixture
def sim() -> Iterator[KubeSim]:
    """A running emulator on a free port."""
    with KubeSim(ready_delay=READY_DELAY) as running:
        yield running


@pytest.fixture
def api(sim: KubeSim) -> Iterator[ApiClient]:
    """The official client, configured like product code would be for a plain-HTTP API server."""
    client = ApiClient(Configuration(host=sim.url))
    yield client
    client.close()


@pytest.fixture
def core(api: ApiClient) -> CoreV1Api:
    """``CoreV1Api`` against the emulator."""
    return CoreV1Api(api)


@pytest.fixture
def apps(api: ApiClient) -> AppsV1Api:
    """``AppsV1Api`` against the emulator."""
    return AppsV1Api(api)


@pytest.fixture
def namespace(core: CoreV1Api) -> str:
    """A fresh ``demo`` namespace."""
    core.create_namespace({"metadata": {"name": "demo"}})
    return "demo"
