"""`/metrics`: Prometheus text that `prometheus_client`'s own parser reads, whose counters move as executions run and
read the same from every API process, because they are computed from the database and the broker at each scrape.

Two real `rollway serve` processes on one PostgreSQL and Redis, with a real worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from orchestrator.metrics import histogram
from orchestrator.settings import Settings

from rollway_testing import SECRET_KEY, TOKEN, wait_until
from serve_process import ServeProcess, rollway_env

Doc = dict[str, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def servers(settings: Settings, tmp_path: Path) -> Iterator[list[httpx.Client]]:
    """Two `rollway serve` processes on the test database and Redis, each behind a client with the admin token."""
    env = rollway_env(
        ROLLWAY_DATABASE_URL=settings.database_url,
        ROLLWAY_REDIS_URL=settings.redis_url or "",
        ROLLWAY_API_TOKEN=TOKEN,
        ROLLWAY_SECRET_KEY=SECRET_KEY,
    )
    processes = [ServeProcess(env, tmp_path / f"serve-{n}.log") for n in range(2)]
    clients = []
    try:
        for process in processes:
            process.start()
            clients.append(httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30))
        yield clients
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.stop()


def scrape(client: httpx.Client) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client, by (name, labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def create(client: httpx.Client, document: Doc) -> Doc:
    answer = client.post("/api/pipelines", json=document)
    assert answer.status_code == 201, answer.text
    created: Doc = answer.json()
    return created


def run(client: httpx.Client, pipeline: Doc) -> str:
    answer = client.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["executionId"])


def view(client: httpx.Client, execution_id: str) -> Doc:
    found: Doc = client.get(f"/api/executions/{execution_id}").json()
    return found


def pipelines(client: httpx.Client, web: HTTPServer) -> tuple[Doc, Doc]:
    """`Release` (a REST GET that answers 200) and `Fragile` (one that answers 500, its stage rolled back by
    `Restore`, a Condition)."""
    note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    base = {"project": "shop", "enabled": True, "concurrency": 10}
    create(
        client,
        base | {"name": "Restore", "stageOrder": ["Undo"], "stages": {"Undo": {"taskOrder": ["Note"], "tasks": note}}},
    )

    def calling(name: str, path: str, **stage: Any) -> Doc:
        call = {"Call": {"type": "REST", "input": {"action": "get", "url": web.url_for(path)}}}
        stages = {"Deliver": {"taskOrder": ["Call"], "tasks": call, **stage}}
        return create(client, base | {"name": name, "stageOrder": ["Deliver"], "stages": stages})

    return calling("Release", "/ok"), calling("Fragile", "/broken", rollback={"pipeline": "Restore"})


def test_counters_move_as_executions_run_and_read_alike_from_two_api_processes(
    servers: list[httpx.Client], worker: Any, web: HTTPServer
) -> None:
    # Given two API processes on one database, a worker, and two pipelines, one of which fails and rolls back
    first, second = servers
    web.expect_request("/ok").respond_with_json({"ok": True})
    web.expect_request("/broken").respond_with_json({"error": "down"}, status=500)
    release, fragile = pipelines(first, web)
    before = scrape(second)

    # When Release runs twice through the first process, and Fragile once through the second
    done = [run(first, release), run(first, release), run(second, fragile)]
    ends = [
        wait_until(
            lambda e=e: view(first, e)["status"] in {"COMPLETED", "ROLLBACK_COMPLETED"} and view(first, e), timeout=90
        )
        for e in done
    ]
    assert [end["status"] for end in ends] == ["COMPLETED", "COMPLETED", "ROLLBACK_COMPLETED"]

    # Then both processes expose the same counters, moved by what ran
    after = [scrape(client) for client in servers]
    for samples in after:
        assert value(samples, "rollway_executions_total", project="shop", pipeline="Release", status="COMPLETED") == 2
        assert value(samples, "rollway_executions_total", project="shop", pipeline="Release", status="RUNNING") == 2
        assert (
            value(samples, "rollway_executions_total", project="shop", pipeline="Fragile", status="ROLLBACK_COMPLETED")
            == 1
        )
        assert value(samples, "rollway_executions_total", project="shop", pipeline="Restore", status="COMPLETED") == 1
        assert value(samples, "rollway_rollbacks_total", project="shop", pipeline="Fragile", cause="failure") == 1
        assert value(samples, "rollway_rollbacks_total", project="shop", pipeline="Release", cause="failure") == 0
        assert value(samples, "rollway_task_duration_seconds_count", type="REST") == 3
        assert value(samples, "rollway_task_duration_seconds_bucket", type="REST", le="+Inf") == 3
        assert value(samples, "rollway_task_duration_seconds_count", type="Condition") == 1
        assert value(samples, "rollway_failure_to_rollback_seconds_count", project="shop", pipeline="Fragile") == 1
        assert value(samples, "rollway_failure_to_rollback_seconds_sum", project="shop", pipeline="Fragile") > 0
        assert {value(samples, "rollway_queue_depth", queue=q) for q in ("rollback", "http", "default")} == {0}
        assert value(samples, "rollway_workers") == 1
    assert value(before, "rollway_executions_total", project="shop", pipeline="Release", status="COMPLETED") == 0
    assert value(before, "rollway_workers") == 1
    durations = {key: number for key, number in after[0].items() if key[0].startswith("rollway_task_duration")}
    assert durations == {key: number for key, number in after[1].items() if key[0].startswith("rollway_task_duration")}


def test_metrics_need_a_token_and_show_a_project_token_only_its_own_pipelines(
    servers: list[httpx.Client], web: HTTPServer
) -> None:
    # Given a pipeline of project shop that ran (no worker: it stays RUNNING), and a viewer token of another project
    first, _ = servers
    release, _ = pipelines(first, web)
    run(first, release)
    made = first.post("/api/tokens", json={"name": "watcher", "project": "elsewhere", "role": "viewer"})
    assert made.status_code == 201, made.text

    # When /metrics is scraped without a token, with the admin token and with the other project's token
    anonymous = httpx.get(str(first.base_url.join("/metrics")), timeout=30)
    everything = scrape(first)
    with httpx.Client(base_url=first.base_url, headers={"Authorization": f"Bearer {made.json()['token']}"}) as other:
        theirs = scrape(other)

    # Then without a token it is refused; the admin sees shop's pipeline, and the other project's token sees the
    # queues but no pipeline of shop
    assert anonymous.status_code == 401, anonymous.text
    assert value(everything, "rollway_executions_total", project="shop", pipeline="Release", status="RUNNING") == 1
    assert value(everything, "rollway_queue_depth", queue="http") == 1
    assert not any(dict(labels).get("project") == "shop" for _, labels in theirs)
    assert value(theirs, "rollway_queue_depth", queue="http") == 1
    assert ("rollway_workers", frozenset()) in theirs


def test_histogram_buckets_are_cumulative_with_an_infinite_last_bucket() -> None:
    # Given task runs of 0.05 s, 0.5 s, 0.7 s and 2 hours
    # When they are bucketed over 0.1 s, 1 s and 60 s
    found = histogram([0.5, 7200.0, 0.05, 0.7], (0.1, 1.0, 60.0))

    # Then each bucket counts what is at most its bound, +Inf counts all, and the sum is what was observed
    assert found.buckets == ((0.1, 1), (1.0, 3), (60.0, 3), (float("inf"), 4))
    assert (found.count, found.total) == (4, 7201.25)
