"""The fault suite's database outages (issue 7): PostgreSQL refusing connections or hanging for 10 s in the middle
of a burst of releases, and a blip while idle. Every execution must end where it would have without the fault, and
the API must answer 503 with Retry-After meanwhile, never 500 and never hang. The database is reached through a
proxy the test controls (see harness.py); split from test_faults.py so the two run side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from harness import (
    Burst,
    Deployment,
    Ledger,
    Prober,
    TcpProxy,
    api_client,
    check_outcome,
    release,
    settle,
    unavailable_problem,
)

from orchestrator.store import Store

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

Report = Callable[[str, str], None]
StartBurst = Callable[..., Burst]
BURST = 32
DATABASE_DOWN_SECONDS = 10.0


def database_outage(
    rollway: Deployment,
    ledger: Ledger,
    store: Store,
    start_burst: StartBurst,
    break_database: Callable[[], None],
    proxy: TcpProxy,
) -> tuple[str, Prober]:
    """A burst with the database broken for 10 s in its middle; the summary and what the API answered meanwhile."""
    pipeline = release(rollway, ledger)
    rollway.workers("worker-a", "worker-b")
    burst = start_burst(pipeline, BURST)
    burst.wait_for(BURST // 4)
    # Broken first, probed at once: the first probe meets the API's pool as the burst left it, idle connections
    # included, which is what an API meets when its database fails under it.
    break_database()
    broken_at = time.monotonic()
    assert rollway.api is not None
    with Prober(rollway.api.url) as prober:
        time.sleep(max(0.0, broken_at + DATABASE_DOWN_SECONDS - time.monotonic()))
        proxy.resume()
        resumed_at = time.monotonic()
        time.sleep(1)
    burst.join()
    outcome = settle(store)
    summary = check_outcome(outcome, ledger, burst, fault_over=resumed_at)
    statuses = dict(prober.statuses())
    return summary + f" api_during_fault={statuses} slowest_api={prober.slowest():.1f}s", prober


def test_postgresql_refusing_connections_for_10s(
    rollway: Deployment, ledger: Ledger, store: Store, proxy: TcpProxy, report: Report, start_burst: StartBurst
) -> None:
    # Given a burst of releases, when PostgreSQL refuses connections for 10 s (listener closed, connections reset)
    summary, prober = database_outage(rollway, ledger, store, start_burst, proxy.refuse, proxy)

    # Then every execution ends where it would have, and the API answered 503 unavailable meanwhile, never 500
    report("postgresql-refused", summary)
    assert not prober.problems(within=5.0), prober.problems(within=5.0)
    assert prober.statuses()[503] >= 1, prober.statuses()


def test_postgresql_hanging_for_10s(
    rollway: Deployment, ledger: Ledger, store: Store, proxy: TcpProxy, report: Report, start_burst: StartBurst
) -> None:
    # Given a burst of releases, when PostgreSQL hangs for 10 s (connections open, nothing forwarded)
    summary, prober = database_outage(rollway, ledger, store, start_burst, proxy.hang, proxy)

    # Then every execution ends where it would have, and API requests during the hang answered 503 unavailable
    # with Retry-After within a few seconds: no request hung, none answered 500
    report("postgresql-hang", summary)
    assert not prober.problems(within=7.0), prober.problems(within=7.0)
    assert prober.statuses()[503] >= 1, prober.statuses()


def test_a_database_blip_while_idle_then_a_release(
    rollway: Deployment, ledger: Ledger, store: Store, proxy: TcpProxy, report: Report
) -> None:
    # Given an idle deployment that has run a release (every pool holds connections)
    pipeline = release(rollway, ledger)
    rollway.workers("worker")
    assert rollway.api is not None
    with api_client(rollway.api.url) as http:
        first = http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {"n": "100"}})
        assert first.status_code == 202, first.text
        settle(store, timeout=30)

        # When the database is gone for 2 s
        proxy.refuse()
        during = http.get("/api/executions?limit=1")
        time.sleep(2)
        proxy.resume()
        resumed_at = time.monotonic()

        # Then the API answered 503 at most while it was down, and the next request answers 2xx
        after = http.get("/api/executions?limit=1")
        second = http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {"n": "101"}})

    # ... and the release triggered after it completes
    outcome = settle(store, timeout=30)
    summary = check_outcome(outcome, ledger, fault_over=resumed_at)
    report("postgresql-blip-idle", summary + f" during={during.status_code} after={after.status_code}")
    assert unavailable_problem(during) is None, unavailable_problem(during)
    assert after.status_code == 200, after.text
    assert second.status_code == 202, second.text
    assert {item.status for item in outcome.releases} == {"COMPLETED"} and len(outcome.releases) == 2
