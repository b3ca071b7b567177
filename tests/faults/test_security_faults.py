"""Faults meet the security features: a signed webhook delivery that arrives while PostgreSQL is away is
answered 503 (so GitHub redelivers it), and its redeliveries start exactly one release."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest
from harness import (
    PROJECT,
    Deployment,
    Ledger,
    TcpProxy,
    api_client,
    release_pipeline,
    settle,
    unavailable_problem,
    undo_pipeline,
)

from orchestrator.store import Store

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

Report = Callable[[str, str], None]
SECRET = "a-webhook-secret-of-some-length"
DATABASE_DOWN_SECONDS = 5.0


def signed(body: bytes, delivery: str) -> dict[str, str]:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": "push",
    }


def test_a_webhook_delivery_during_a_database_outage_is_refused_then_redelivered_once(
    rollway: Deployment, ledger: Ledger, store: Store, proxy: TcpProxy, report: Report
) -> None:
    # Given the release pipeline behind a webhook trigger that takes `n` from the payload, and a worker
    assert rollway.api is not None
    rollway.api.create(undo_pipeline(ledger.url))
    rollway.api.create(release_pipeline(ledger.url))
    trigger = {"name": "push", "project": PROJECT, "pipeline": "Release", "secret": SECRET, "input": {"n": "${body.n}"}}
    rollway.api.create_at("/api/triggers", trigger)
    rollway.workers("worker")
    body = json.dumps({"n": "7", "after": "0123abcd"}).encode()

    with api_client(rollway.api.url) as http:
        # When a signed delivery arrives while the database refuses connections
        proxy.refuse()
        during = http.post("/api/triggers/push", content=body, headers=signed(body, "delivery-1"))
        time.sleep(DATABASE_DOWN_SECONDS)
        proxy.resume()
        resumed_at = time.monotonic()

        # ... and GitHub redelivers it, twice (its "Redeliver" button, or its retry after the 503)
        again = http.post("/api/triggers/push", content=body, headers=signed(body, "delivery-1"))
        replay = http.post("/api/triggers/push", content=body, headers=signed(body, "delivery-1"))

    # Then the delivery during the outage was answered 503 with Retry-After, never 401 or 500
    assert unavailable_problem(during) is None, unavailable_problem(during)
    # ... the redelivery started the release, the replay answered that same execution
    assert again.status_code == 202, again.text
    assert replay.status_code == 200 and replay.json()["duplicate"] is True, replay.text
    assert replay.json()["executionId"] == again.json()["executionId"]
    # ... which completes, the only execution there is, with one order placed
    outcome = settle(store, timeout=60)
    assert [(item.id, item.status) for item in outcome.executions] == [(again.json()["executionId"], "COMPLETED")]
    assert sum(ledger.effects_of("order").values()) == 1
    assert ledger.doubles() == {}
    took = outcome.ended_at - resumed_at
    report(
        "webhook-during-postgresql-outage", f"during={during.status_code} then 202 once, completed {took:.1f} s after"
    )
