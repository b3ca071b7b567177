"""A Redis restart while a worker holds an unacknowledged message: the worker reconnects and goes on working.

With Celery 5.7.0 and kombu 5.7.0 the worker exited here (`'NoneType' object has no attribute 'hostname'`
in kombu's `restore_unacked`); `workers/broker.py` is the workaround. The test runs its own redis-server,
because it restarts it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.exceptions import TimeoutError as CeleryTimeoutError

from orchestrator.settings import Settings, sqlite_url
from orchestrator.store import Store
from workers.celery_app import make_celery
from workers.constants import QUEUE_DEFAULT, TASK_PING

from rollway_testing import WorkerProcess, unavailable, wait_until

# Long enough that the worker still holds the message, waiting for its ETA, when Redis restarts.
HELD_COUNTDOWN_SECONDS = 30
# kombu's Redis hash of the messages delivered but not yet acknowledged.
UNACKED_KEY = "unacked"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server of the test's own on a free port, restarted on the same port; with or without an AOF."""

    def __init__(self, binary: str, directory: Path, appendonly: bool) -> None:
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.directory),
        ]  # fmt: skip
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        wait_until(self._answers, timeout=timeout, interval=0.05, what=f"redis-server on port {self.port}")

    def restart(self) -> None:
        """Shut down without an RDB snapshot (an AOF, if on, is kept) and start again on the same port."""
        # The server may close the connection before it answers.
        with self.client() as client, contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        assert self.process is not None
        self.process.wait(timeout=10)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False


@pytest.fixture(params=[False, True], ids=["in-memory", "appendonly"])
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server, without persistence and then with an append-only file."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", FileNotFoundError("redis-server is not on PATH"))
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(binary, directory, appendonly=request.param)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    """A deployment on the private Redis and a SQLite file: the worker only has to answer pings."""
    database_url = sqlite_url(tmp_path / "rollway.db")
    Store.connect(database_url).dispose()
    return Settings(database_url=database_url, redis_url=redis_server.url)


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """One `rollway worker -c 2` on the private Redis."""
    started = WorkerProcess(settings, tmp_path / "worker.log", "-c", "2")
    try:
        started.wait_ready(timeout=30)
        yield started
    finally:
        started.stop()


def _ping(settings: Settings, countdown: float | None = None) -> str:
    """Send a ping through an app of its own (a fresh broker connection) and return its task id."""
    app = make_celery(settings)
    try:
        return str(app.send_task(TASK_PING, countdown=countdown).id)
    finally:
        app.close()


def _answer(settings: Settings, task_id: str, timeout: float) -> object:
    """A task's result, or None if none came within `timeout` seconds."""
    app = make_celery(settings)
    try:
        return app.AsyncResult(task_id).get(timeout=timeout)
    except CeleryTimeoutError:
        return None
    finally:
        app.close()


def _in_redis(server: RedisServer, task_id: str) -> bool:
    """Whether a message is still in Redis: held unacknowledged by a worker, or queued again."""
    with server.client() as client:
        held = client.hvals(UNACKED_KEY)
        queued = client.lrange(QUEUE_DEFAULT, 0, -1)
    return any(task_id.encode() in message for message in [*held, *queued])


def test_worker_survives_a_redis_restart_while_holding_an_unacked_message(
    redis_server: RedisServer, settings: Settings, worker: WorkerProcess
) -> None:
    # Given a worker that answers pings, and holds one more waiting for its ETA
    answered = _ping(settings)
    assert _answer(settings, answered, timeout=20) == "pong", worker.log()
    held = _ping(settings, countdown=HELD_COUNTDOWN_SECONDS)
    wait_until(lambda: f"[{held}] received" in worker.log(), timeout=15, what="the worker receiving the ETA ping")

    # When Redis restarts under it
    redis_server.restart()
    wait_until(lambda: "Connection to broker lost" in worker.log(), timeout=15, what="the worker seeing Redis go")

    # Then the worker is still running, reconnects by itself and answers a ping sent after the restart
    after = _ping(settings)
    assert _answer(settings, after, timeout=30) == "pong", worker.log()
    assert worker.process.poll() is None, worker.log()
    assert "Unrecoverable error" not in worker.log(), worker.log()
    # ... and with an append-only file the message it held is still in Redis, to be delivered again
    if redis_server.appendonly:
        assert _in_redis(redis_server, held), worker.log()
