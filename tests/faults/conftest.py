"""Fixtures of the fault suite: a database of its own behind a TCP proxy, a private Redis, the ledger web service,
a kubesim cluster, and a Rollway deployment on all of them.

Nothing here stops or restarts the shared services: PostgreSQL is only ever reached through the proxy the test
controls, and the Redis the test stops is a redis-server it started itself on a free port.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import LEASE_SECONDS, PROJECT, SWEEP_SECONDS, Burst, Deployment, Ledger, RedisServer, TcpProxy
from sqlalchemy.engine import make_url

from kubesim import KubeSim
from orchestrator.store import Store

from rollway_testing import (
    FIGURES,
    SECRET_KEY,
    TOKEN,
    create_database,
    fresh_schema,
    truncate,
    unavailable,
    worker_database,
)

FAULTS_DB = worker_database(os.environ.get("ROLLWAY_TEST_FAULTS_DATABASE", "rollway_faults"))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """`report(fault, summary)`: print a test's one-line figures and list them at the end of the run."""

    def add(fault: str, summary: str) -> None:
        line = f"{fault}: {summary}"
        print(line)
        request.node.user_properties.append((FIGURES, line))

    return add


@pytest.fixture(scope="session")
def faults_database() -> str:
    """The suite's own PostgreSQL database (direct URL), created if missing, with Rollway's schema."""
    direct = create_database(FAULTS_DB)
    fresh_schema(direct)
    return direct


@pytest.fixture
def store(faults_database: str) -> Iterator[Store]:
    """The suite's database, emptied, reached directly (not through the proxy): what the test reads and checks."""
    truncate(faults_database)
    direct = Store.connect(faults_database)
    yield direct
    direct.dispose()


@pytest.fixture
def proxy(faults_database: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of PostgreSQL, passing until the test says otherwise."""
    url = make_url(faults_database)
    running = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    yield running
    running.stop()


@pytest.fixture
def proxied_url(faults_database: str, proxy: TcpProxy) -> str:
    """The suite's database URL through the proxy."""
    url = make_url(faults_database).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, on a free port; the test may stop and start it."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", FileNotFoundError("redis-server is not on PATH (Debian package redis-server)"))
    server = RedisServer(tmp_path / "redis.log", binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    running = Ledger().start()
    yield running
    running.stop()


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim(ready_delay=0.1) as sim:
        yield sim


@pytest.fixture
def rollway(
    store: Store,
    proxied_url: str,
    private_redis: RedisServer,
    cluster: KubeSim,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Deployment]:
    """A Rollway deployment (API served; workers and beat started by the test) with the cluster as an endpoint."""
    env = dict(os.environ)
    env.update(
        ROLLWAY_DATABASE_URL=proxied_url,
        ROLLWAY_REDIS_URL=private_redis.url,
        ROLLWAY_API_TOKEN=TOKEN,
        ROLLWAY_SECRET_KEY=SECRET_KEY,
        ROLLWAY_LEASE_SECONDS=str(LEASE_SECONDS),
        ROLLWAY_SWEEP_SECONDS=str(SWEEP_SECONDS),
    )
    env.pop("ROLLWAY_REDIS_PREFIX", None)
    deployment = Deployment(env, tmp_path)
    try:
        api = deployment.serve_api()
        api.create_at(
            "/api/endpoints", {"name": "faults-cluster", "project": PROJECT, "url": cluster.url, "insecure": True}
        )
        yield deployment
    finally:
        deployment.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(deployment.logs())


@pytest.fixture
def start_burst(rollway: Deployment) -> Iterator[Callable[..., Burst]]:
    """`burst(pipeline, count=32, interval=0.25)`: start triggering executions of a pipeline over HTTP."""
    started: list[Burst] = []

    def start(pipeline: dict[str, object], count: int = 32, interval: float = 0.25) -> Burst:
        assert rollway.api is not None
        running = Burst(rollway.api.url, str(pipeline["id"]), count, interval).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()
