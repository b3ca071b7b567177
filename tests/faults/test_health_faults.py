"""`/healthz` and `/readyz` of a real `rollway serve` while its database and its broker go away and come back:
readiness names the part that is down (503, with Retry-After) and recovers with it; liveness never moves."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from harness import Deployment, RedisServer, TcpProxy

from rollway_testing import wait_until

pytestmark = pytest.mark.faults


def probe(url: str, path: str) -> tuple[int, Any, httpx.Headers]:
    """GET a health path without any token, as a load balancer does."""
    answer = httpx.get(f"{url}{path}", timeout=15)
    return answer.status_code, answer.json(), answer.headers


def test_readiness_follows_the_database_and_the_broker_and_liveness_stays(
    rollway: Deployment, proxy: TcpProxy, private_redis: RedisServer
) -> None:
    # Given a served API with its database and broker up
    assert rollway.api is not None
    url = rollway.api.url
    status, body, _ = probe(url, "/readyz")
    assert status == 200 and body["status"] == "ready", body
    assert body["checks"] == {"database": {"ok": True, "message": ""}, "broker": {"ok": True, "message": ""}}

    # When PostgreSQL refuses connections
    proxy.refuse()

    # Then readiness is 503 naming the database, with Retry-After and no address of it; liveness is still 200
    status, body, headers = probe(url, "/readyz")
    assert status == 503 and body["status"] == "unavailable", body
    assert body["checks"]["database"]["ok"] is False and body["checks"]["broker"]["ok"] is True, body
    assert "Retry-After" in headers
    assert "127.0.0.1" not in str(body) and "postgres" not in str(body).lower()
    assert probe(url, "/healthz")[:2] == (200, {"status": "ok"})

    # When the database is back but Redis is stopped
    proxy.resume()
    private_redis.stop()

    # Then readiness names the broker instead
    wait_until(lambda: probe(url, "/readyz")[1]["checks"]["database"]["ok"], timeout=20)
    status, body, _ = probe(url, "/readyz")
    assert status == 503 and body["checks"]["broker"]["ok"] is False, body
    assert "redis://" not in str(body)

    # When Redis comes back, Then the API is ready again
    private_redis.start()
    wait_until(lambda: probe(url, "/readyz")[0] == 200, timeout=30)
