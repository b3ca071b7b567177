"""What the tests share besides fixtures: service settings, and helpers for worker processes and served APIs.

Imported as `rollway_testing` (a name of its own: `conftest` is ambiguous with more than one conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from werkzeug.serving import BaseWSGIServer

from orchestrator.settings import Settings

CI = os.environ.get("CI") == "true"
# Under pytest-xdist every worker process ("gw0", "gw1", ...) has a database and a Redis index of its own, so
# the per-test flushes of one worker never reach another's tests.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_SLOT = int(XDIST_WORKER[2:]) if XDIST_WORKER[:2] == "gw" and XDIST_WORKER[2:].isdigit() else 0


def worker_database(name: str) -> str:
    """A test database's name for this xdist worker (the name itself outside xdist)."""
    return f"{name}_{XDIST_WORKER}" if XDIST_WORKER else name


def _worker_redis(url: str) -> str:
    """The Redis URL with this worker's own db index: the given one, counting down one per xdist worker."""
    base, _, index = url.rpartition("/")
    if not _SLOT or not index.isdigit():
        return url
    return f"{base}/{(int(index) - _SLOT) % 16}"


REDIS_URL = _worker_redis(os.environ.get("ROLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
POSTGRES_SERVER = os.environ.get("ROLLWAY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
POSTGRES_DB = worker_database(os.environ.get("ROLLWAY_TEST_DATABASE", "rollway_test"))
TOKEN = "test-token"
# The user property under which a fault test hands its one-line figures to the run's summary (tests/conftest.py).
FIGURES = "fault figures"
SECRET_KEY = "test-secret-key-that-is-long-and-random-enough"


def unavailable(what: str, error: Exception) -> NoReturn:
    """Fail in CI, skip elsewhere."""
    message = f"{what} is not available: {error}"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


def create_database(name: str) -> str:
    """The URL of a database of that name on the local PostgreSQL, created if missing (unavailable: skip or fail)."""
    from sqlalchemy import create_engine, text

    try:
        admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if exists.first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as error:
        unavailable("PostgreSQL", error)
    return f"{POSTGRES_SERVER}/{name}"


def fresh_schema(url: str) -> None:
    """Make Rollway's schema anew in the PostgreSQL database at `url`, by its revisions: every session runs the
    migrations on PostgreSQL, and a database left behind by other code (an older revision 3, say) never
    lingers."""
    from sqlalchemy import create_engine, text

    from orchestrator import migrations

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrations.upgrade(engine)
    engine.dispose()


def truncate(url: str) -> None:
    """Empty every table of Rollway's schema in the database at `url`."""
    from sqlalchemy import create_engine, text

    from orchestrator.schema import metadata

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(table.name for table in metadata.sorted_tables) + " CASCADE"))
    engine.dispose()


def rollway_command() -> list[str]:
    """The installed `rollway` console script, or the same entry point through Python."""
    script = shutil.which("rollway", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "api"]


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROLLWAY_DATABASE_URL=settings.database_url, ROLLWAY_REDIS_URL=settings.redis_url or "")
    if settings.api_token:
        env["ROLLWAY_API_TOKEN"] = settings.api_token
    if settings.secret_key:
        env["ROLLWAY_SECRET_KEY"] = settings.secret_key
    if settings.redis_prefix:
        env["ROLLWAY_REDIS_PREFIX"] = settings.redis_prefix
    env.update(ROLLWAY_LEASE_SECONDS=str(settings.lease_seconds), ROLLWAY_SWEEP_SECONDS=str(settings.sweep_seconds))
    return env


class WorkerProcess:
    """A `rollway worker` process, stopped at the end of the test."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [*rollway_command(), "worker", "--loglevel", "INFO", *args]
        self.process = subprocess.Popen(command, env=settings_env(settings), stdout=self._log, stderr=self._log)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class ServedApp:
    """The API served over real HTTP on a free local port, in a thread."""

    def __init__(self, server: BaseWSGIServer) -> None:
        self.server = server
        # `stop` waits for the requests under way (a page a browser left open may still be asking).
        server.daemon_threads = False  # type: ignore[attr-defined]
        server.block_on_close = True  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{server.server_port}"
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def create(self, document: dict[str, Any]) -> dict[str, Any]:
        """POST a pipeline document; it must be created."""
        return self.create_at("/api/pipelines", document)

    def create_at(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a body that must be created (201)."""
        answer = self.http.post(path, json=body)
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def stop(self) -> None:
        self.http.close()
        self.server.shutdown()
        self.server.server_close()


TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "ROLLBACK_COMPLETED", "ROLLBACK_FAILED"}


def wait_until(check: Any, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Call `check` until it returns something truthy; its last answer is in the error if it never does."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout}s; last answer: {last!r}")


# -- tokens and executions as the API shows them


def token_for(api: ServedApp, role: str, name: str, project: str = "shop") -> str:
    """A new token of `role` in `project`, made by the bootstrap admin through the API."""
    return str(api.create_at("/api/tokens", {"name": name, "project": project, "role": role})["token"])


def client_for(api: ServedApp, role: str, name: str, project: str = "shop") -> httpx.Client:
    """An HTTP client of the API on a new token of `role` in `project`."""
    token = token_for(api, role, name, project)
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def started(client: httpx.Client, pipeline: dict[str, Any]) -> str:
    """The id of a new execution of `pipeline`, triggered through `client` with no input."""
    answer = client.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["executionId"])


def execution(api: ServedApp, execution_id: str) -> dict[str, Any]:
    """An execution's detail, with its stages and tasks."""
    found: dict[str, Any] = api.http.get(f"/api/executions/{execution_id}").json()
    return found


def waits(api: ServedApp, execution_id: str) -> dict[str, Any]:
    """The execution once it is WAITING."""
    return wait_until(
        lambda: (found := execution(api, execution_id))["status"] == "WAITING" and found, what="the run to wait"
    )


def ended(api: ServedApp, execution_id: str) -> dict[str, Any]:
    """The execution once it has ended."""
    return wait_until(
        lambda: (found := execution(api, execution_id))["status"] in TERMINAL and found,
        timeout=90,
        what="the run to end",
    )


def task_of(view: dict[str, Any], stage: str, task: str) -> dict[str, Any]:
    """One task of an execution's detail."""
    [found] = [item for item in next(s for s in view["stages"] if s["name"] == stage)["tasks"] if item["name"] == task]
    return found


def template_request(kubernetes_yaml: str, **changes: Any) -> dict[str, Any]:
    """A smart CD template request for the shop's web application on dev-cluster and prod-cluster."""
    request: dict[str, Any] = {
        "project": "shop",
        "pipelineName": "RollingUpgrade-Example",
        "kubernetesYaml": kubernetes_yaml,
        "service": "web",
        "environments": {"dev": {"endpoint": "dev-cluster"}, "prod": {"endpoint": "prod-cluster"}},
        "imageSource": "runtime-input",
        "deploymentModel": "rolling-upgrade",
        "rollback": True,
        "healthCheckUrl": "/healthz",
    }
    return request | changes
