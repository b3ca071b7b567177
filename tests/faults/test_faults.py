"""The fault suite, issue 7's acceptance test: Rollway keeps every execution on course through the failures of its
own infrastructure.

Each burst test triggers 32 executions of the 5-task release pipeline (REST POST to the ledger, POLL, K8S APPLY
on kubesim, Condition, REST GET) over HTTP, about one in five made to fail and roll back, injects its fault
mid-burst, and then checks that every execution ended where it would have without the fault, none is stuck,
and no POST had its effect twice. Workers and the beat are processes of their own; the database is reached
through a proxy the test controls and Redis is a private redis-server the test stops and starts.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from harness import (
    DISCARDED,
    Burst,
    Deployment,
    Ledger,
    RedisServer,
    RollwayProcess,
    api_client,
    check_outcome,
    gated_undo_pipeline,
    owner_of_port,
    pending_task_ids,
    release,
    serial_pipeline,
    settle,
)

from orchestrator.store import Store

from rollway_testing import TERMINAL, wait_until

# Generous next to the 60 s a passing test takes: a failing one ends on its own bounded waits, with its figures.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

Doc = dict[str, Any]
Report = Callable[[str, str], None]
StartBurst = Callable[..., Burst]
BURST = 32
# Slow enough that a killed worker's task is certainly in flight, quick enough to keep the burst short.
IN_FLIGHT_SECONDS = 2.0
REDIS_DOWN_SECONDS = 6.0
# A trigger commits to the database and leaves the message to the outbox: it must not wait for the broker.
TRIGGER_SECONDS = 3.0


def caught_in_flight(kind: str, ledger: Ledger, workers: list[RollwayProcess], tries: int = 10) -> int:
    """Slow the next `kind` request down until one comes from a child of `workers`: that child's pid.

    The child is then in the middle of its task for IN_FLIGHT_SECONDS.
    """
    for _ in range(tries):
        ledger.slow_next(kind, IN_FLIGHT_SECONDS)
        flight = ledger.in_flight.get(timeout=30)
        owner = owner_of_port(flight.client_port, [pid for worker in workers for pid in worker.children()])
        if owner is not None:
            return owner
    raise AssertionError(f"no {kind} request of these workers' children was caught in flight")


def test_sigkill_of_a_worker_process_group_mid_burst(
    rollway: Deployment, ledger: Ledger, store: Store, report: Report, start_burst: StartBurst
) -> None:
    # Given two workers and the beat, and a burst of releases
    pipeline = release(rollway, ledger)
    doomed, survivor = rollway.workers("worker-a", "worker-b")
    burst = start_burst(pipeline, BURST)
    burst.wait_for(BURST // 3)

    # When worker A's whole process group is SIGKILLed while one of its children is in the middle of a task
    caught_in_flight("poll", ledger, [doomed])
    doomed.kill_group()
    killed_at = time.monotonic()
    burst.join()

    # Then worker B alone brings every execution to where it would have ended
    outcome = settle(store)
    summary = check_outcome(outcome, ledger, burst, fault_over=killed_at)
    report("sigkill-worker-group", summary)
    assert not doomed.alive() and not doomed.children()
    assert survivor.alive()


def test_sigkill_of_one_prefork_child_while_it_runs_a_task(
    rollway: Deployment, ledger: Ledger, store: Store, report: Report, start_burst: StartBurst
) -> None:
    # Given one worker of two prefork children, the beat, and a burst of releases
    pipeline = release(rollway, ledger)
    (worker,) = rollway.workers("worker")
    burst = start_burst(pipeline, BURST)

    # When the child that placed an order (its effect done, the answer not yet sent) is SIGKILLed
    burst.wait_for(BURST // 4)
    killed = [caught_in_flight("order", ledger, [worker])]
    os.kill(killed[0], signal.SIGKILL)
    # ... and later the child in the middle of a POLL
    burst.wait_for(BURST // 2)
    killed.append(caught_in_flight("poll", ledger, [worker]))
    os.kill(killed[1], signal.SIGKILL)
    killed_at = time.monotonic()
    burst.join()

    # Then every execution still ends where it would have, and the re-sent order was answered from the ledger
    outcome = settle(store)
    summary = check_outcome(outcome, ledger, burst, fault_over=killed_at)
    report("sigkill-prefork-child", summary + f" killed_children={len(killed)}")
    assert worker.alive()
    assert ledger.repeats >= 1, "the order whose answer was lost was never re-sent under its key"


def test_redis_restart_mid_burst_with_triggers_while_it_is_down(
    rollway: Deployment,
    ledger: Ledger,
    store: Store,
    private_redis: RedisServer,
    report: Report,
    start_burst: StartBurst,
) -> None:
    # Given two workers, the beat and a burst of releases
    pipeline = release(rollway, ledger)
    workers = rollway.workers("worker-a", "worker-b")
    burst = start_burst(pipeline, BURST)
    burst.wait_for(BURST // 4)

    # When Redis is stopped (losing every message: no persistence), kept down while triggers go on, and started again
    private_redis.stop()
    down_at = time.monotonic()
    time.sleep(REDIS_DOWN_SECONDS)
    private_redis.start()
    up_at = time.monotonic()
    burst.join()

    # Then the triggers sent while Redis was down were accepted at once (202), and every execution ended as it would
    while_down = [item for item in burst.triggered if down_at <= item.at < up_at]
    assert while_down, "no trigger was sent while Redis was down"
    refused = [(item.n, item.answers, round(item.seconds, 1)) for item in while_down if item.answers != ["202"]]
    slow = [(item.n, round(item.seconds, 1)) for item in while_down if item.seconds > TRIGGER_SECONDS]
    outcome = settle(store)
    summary = check_outcome(outcome, ledger, burst, fault_over=up_at)
    slowest = max(item.seconds for item in while_down)
    report("redis-restart", summary + f" triggers_while_down={len(while_down)} slowest_trigger={slowest:.1f}s")
    assert not refused, f"triggers while Redis was down were not simply accepted: {refused}"
    assert not slow, f"triggers while Redis was down waited for it (n, seconds): {slow}"
    assert all(worker.alive() for worker in workers)


def test_a_run_task_message_revoked_from_flower(
    rollway: Deployment,
    ledger: Ledger,
    store: Store,
    private_redis: RedisServer,
    report: Report,
    start_burst: StartBurst,
) -> None:
    # Given a worker whose two children are both held up in slow polls, so that messages wait in Redis
    pipeline = release(rollway, ledger)
    (worker,) = rollway.workers("worker")
    burst = start_burst(pipeline, BURST)
    burst.wait_for(BURST // 4)
    ledger.slow_next("poll", 4.0)
    ledger.slow_next("poll", 4.0)
    for _ in range(2):
        ledger.in_flight.get(timeout=30)
    broker = private_redis.client()
    waiting: list[str] = []
    deadline = time.monotonic() + 3
    while len(waiting) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        waiting = pending_task_ids(broker)
    broker.close()
    assert waiting, "no run_task message waited in Redis while the worker was busy"

    # When run_task messages are revoked by their Celery ids, as Flower's revoke button does (terminate=False)
    revoked = set(waiting[:3])
    celery = rollway.celery()
    for task_id in revoked:
        celery.control.revoke(task_id, terminate=False)
    revoked_at = time.monotonic()

    # Then the worker discards them when it comes to them
    discarded = wait_until(
        lambda: set(DISCARDED.findall(worker.log())) & revoked, timeout=30, what="a revoked message to be discarded"
    )
    burst.join()

    # ... and the executions whose task was revoked still end as they would have
    outcome = settle(store)
    summary = check_outcome(outcome, ledger, burst, fault_over=revoked_at)
    report("revoked-from-flower", summary + f" revoked={len(revoked)} discarded={len(discarded)}")


def events(http: httpx.Client, execution_id: str) -> list[Doc]:
    answer = http.get(f"/api/executions/{execution_id}/events")
    assert answer.status_code == 200, f"GET /api/executions/{execution_id}/events: {answer.status_code} {answer.text}"
    found: list[Doc] = answer.json()
    return found


def execution_event(history: list[Doc], status: str) -> Doc:
    """The first event of the execution itself (not of a task) reaching `status`."""
    found = [item for item in history if item["status"] == status and not item.get("task")]
    assert found, f"no {status} event of the execution in {history}"
    return found[0]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_of(http: httpx.Client, execution_id: str) -> str:
    answer = http.get(f"/api/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def test_concurrency_1_a_release_during_a_rollback_waits_for_it(
    rollway: Deployment, ledger: Ledger, report: Report
) -> None:
    # Given a pipeline of concurrency 1 whose rollback runs until a gate opens
    assert rollway.api is not None
    rollway.api.create(gated_undo_pipeline(ledger.url, "undo"))
    pipeline = rollway.api.create(serial_pipeline())
    rollway.workers("worker")
    runs = f"/api/pipelines/{pipeline['id']}/executions"
    with api_client(rollway.api.url) as http:
        # When a release fails and is ROLLING_BACK
        failing = http.post(runs, json={"input": {"n": "1", "ship": "no"}}).json()["executionId"]
        wait_until(lambda: status_of(http, failing) == "ROLLING_BACK", timeout=30, what="the first to roll back")

        # ... and the next release is triggered
        answer = http.post(runs, json={"input": {"n": "2"}})
        assert answer.status_code == 202, answer.text
        following = answer.json()["executionId"]

        # Then it is QUEUED, and stays so while the rollback runs
        for _ in range(6):
            assert status_of(http, following) == "QUEUED"
            assert status_of(http, failing) == "ROLLING_BACK"
            time.sleep(0.5)

        # ... and when the rollback has settled the parent, it starts and completes
        ledger.open_gate("undo")
        wait_until(lambda: status_of(http, following) in TERMINAL, timeout=30, what="the second release to end")
        assert status_of(http, failing) == "ROLLBACK_COMPLETED"
        assert status_of(http, following) == "COMPLETED"
        settled = execution_event(events(http, failing), "ROLLBACK_COMPLETED")
        started = execution_event(events(http, following), "RUNNING")
        report("concurrency-1", f"rollback_settled_at={settled['at']} next_started_at={started['at']}")
        assert moment(started["at"]) >= moment(settled["at"]), (settled, started)
