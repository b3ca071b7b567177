"""The fault suite's own instruments, checked before they are trusted: the PostgreSQL proxy's modes, the private
Redis restart, the ledger's idempotency, and finding (and killing) the process behind a request."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from harness import Deployment, Ledger, RedisServer, TcpProxy, owner_of_port
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.faults


def connect(url: str, timeout: int = 5) -> psycopg.Connection[Any]:
    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password or "",
        dbname=parsed.database,
        connect_timeout=timeout,
        autocommit=True,
    )


@pytest.fixture
def database(proxied_url: str) -> Iterator[psycopg.Connection[Any]]:
    conn = connect(proxied_url)
    yield conn
    conn.close()


def in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `call` in a thread; the dict gets its `result` or `error`, and `at` when it returned."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except Exception as error:
            box["error"] = error
        box["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_the_proxy_passes_queries(database: psycopg.Connection[Any], proxy: TcpProxy) -> None:
    # Given a connection through the proxy, when queries run, then they are answered
    assert database.execute("SELECT 1 + 1").fetchone() == (2,)
    big = database.execute("SELECT repeat('x', 2000000)").fetchone()
    assert big is not None and len(big[0]) == 2_000_000
    assert proxy.connections == 1


def test_refused_connections_fail_at_once_and_resume_works(
    database: psycopg.Connection[Any], proxy: TcpProxy, proxied_url: str
) -> None:
    # When the proxy refuses
    proxy.refuse()

    # Then the open connection is reset and a new one is refused, both at once
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        database.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="refused"):
        connect(proxied_url)
    assert time.monotonic() - started < 2
    assert proxy.connections == 0

    # ... and after resume, a new connection on the same port works
    proxy.resume()
    with connect(proxied_url) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_a_hang_holds_queries_and_connections_until_resume(
    database: psycopg.Connection[Any], proxy: TcpProxy, proxied_url: str
) -> None:
    # When the proxy hangs
    proxy.hang()
    query, answered = in_thread(lambda: database.execute("SELECT 42").fetchone())
    opening, opened = in_thread(lambda: connect(proxied_url, timeout=30))

    # Then neither the query on the open connection nor a new connection gets anywhere
    time.sleep(1.5)
    assert answered == {} and opened == {}
    assert proxy.connections == 2

    # ... until it resumes: then both complete, with what was sent meanwhile
    resumed = time.monotonic()
    proxy.resume()
    query.join(5)
    opening.join(5)
    assert answered["result"] == (42,)
    assert answered["at"] - resumed < 2
    with opened["result"] as late:
        assert late.execute("SELECT 7").fetchone() == (7,)


def test_the_proxy_stops_cleanly(proxy: TcpProxy, proxied_url: str) -> None:
    # Given an open connection and a hang
    conn = connect(proxied_url)
    proxy.hang()

    # When the proxy stops
    started = time.monotonic()
    proxy.stop()

    # Then it stopped at once, the connection is gone and the port refuses
    assert time.monotonic() - started < 2
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        connect(proxied_url)


def test_the_private_redis_restarts_on_its_port_and_forgets(private_redis: RedisServer) -> None:
    # Given a key in the private Redis
    client = private_redis.client()
    client.set("k", "v")

    # When it is stopped, it answers nothing
    private_redis.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()

    # ... and started again, it answers on the same port, with nothing kept
    private_redis.start()
    assert client.ping() and client.get("k") is None
    client.close()


def test_the_ledger_honours_idempotency_keys(ledger: Ledger) -> None:
    with httpx.Client(base_url=ledger.url) as http:
        # When one order is POSTed twice under one key, and another without a key
        first = http.post("/orders", json={"execution": "e1"}, headers={"Idempotency-Key": "k1"})
        again = http.post("/orders", json={"execution": "e1"}, headers={"Idempotency-Key": "k1"})
        http.post("/orders", json={"execution": "e2"})
        http.post("/orders", json={"execution": "e2"})

        # Then the repeat got the stored answer with no new effect; unkeyed ones had an effect each
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert ledger.repeats == 1 and ledger.unkeyed == 2
        assert ledger.doubles() == {("order", "e2"): 2}

        # ... and its status is DONE from the second poll
        order = first.json()["id"]
        states = [http.get(f"/orders/{order}/status").json()["state"] for _ in range(3)]
        assert states == ["PENDING", "DONE", "DONE"]


def test_the_process_behind_a_slow_request_is_found(ledger: Ledger) -> None:
    # Given a process in the middle of a slowed request
    ledger.slow_next("poll", 3)
    script = f"import httpx; httpx.get('{ledger.url}/orders/O-1/status', timeout=10)"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        flight = ledger.in_flight.get(timeout=10)

        # Then the port of its request names it
        assert owner_of_port(flight.client_port, [child.pid]) == child.pid
        assert owner_of_port(flight.client_port, []) is None
    finally:
        child.kill()
        child.wait()


def test_a_worker_runs_in_its_own_process_group(
    rollway: Deployment, private_redis: RedisServer, tmp_path: Path
) -> None:
    # Given a worker with two prefork children
    (worker,) = rollway.workers("worker-a", beat=False)
    children = worker.children()
    assert len(children) == 2, worker.log()

    # When its group is killed
    worker.kill_group()

    # Then the main process and every child are gone
    time.sleep(0.2)
    assert not worker.alive()
    assert all(not Path(f"/proc/{pid}").exists() or "zombie" in status(pid) for pid in children)


def status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "gone"
