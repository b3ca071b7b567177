"""Fixtures on real services: PostgreSQL and SQLite stores, a flushed Redis db, worker and API processes.

Without Redis or PostgreSQL a test skips on a laptop, but fails when CI=true: CI must never pass by
skipping what it exists to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from orchestrator.settings import Settings, sqlite_url
from orchestrator.store import Store

from rollway_testing import (
    FIGURES,
    POSTGRES_DB,
    REDIS_URL,
    SECRET_KEY,
    TOKEN,
    ServedApp,
    WorkerProcess,
    create_database,
    fresh_schema,
    truncate,
    unavailable,
    wait_until,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of each fault test (tests/faults), so they can be quoted from a plain `pytest` run.

    They travel as the test's user properties, which pytest-xdist hands from its workers to the process that
    writes the summary.
    """
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == FIGURES
    ]
    if lines:
        terminalreporter.section("fault suite figures")
        for line in lines:
            terminalreporter.write_line(str(line))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A test database on the local PostgreSQL, created once per session."""
    url = create_database(POSTGRES_DB)
    fresh_schema(url)
    return url


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """The PostgreSQL test database, emptied before and after the test."""
    truncate(postgres_url)
    yield postgres_url
    truncate(postgres_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn: a fresh SQLite file, then the emptied PostgreSQL test database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "rollway.db")
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store.connect(database_url)
    yield store
    store.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis db index, flushed before and after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable("Redis", error)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def settings(pg_url: str, redis_url: str) -> Settings:
    """Settings of a deployment on the test PostgreSQL and Redis, with an API token."""
    return Settings(database_url=pg_url, redis_url=redis_url, api_token=TOKEN, secret_key=SECRET_KEY)


@pytest.fixture
def worker_factory(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start `rollway worker` processes on the test settings; their logs are printed if the test fails."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for worker in started:
            print(f"--- {worker.log_path.name}\n{worker.log()[-20000:]}")


@pytest.fixture
def worker(worker_factory: Any) -> WorkerProcess:
    """One `rollway worker -c 2` on every queue."""
    started: WorkerProcess = worker_factory("-c", "2")
    return started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def api(settings: Settings) -> Iterator[ServedApp]:
    """The Rollway API on the test settings, over HTTP."""
    from api.app import create_app

    app = create_app(settings)
    served = ServedApp(make_server("127.0.0.1", 0, app, threaded=True))
    yield served
    # Live streams of pages a browser left open end once the store says it is closing; stopping the server then
    # waits for every request under way, so none is mid-query when the pool closes.
    store = app.extensions["rollway"].store
    store.disposed = True
    served.stop()
    store.dispose()


@pytest.fixture
def wait() -> Any:
    """`wait(check, timeout=..., what=...)`: poll until `check()` is truthy."""
    return wait_until


@pytest.fixture
def web() -> Iterator[Any]:
    """A local HTTP server (threaded) that tests script; tasks of the pipelines under test call it."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, driven by Playwright) for the web UI's tests: one per test module."""
    from browser_support import chromium

    with chromium() as found:
        yield found
