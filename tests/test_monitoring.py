"""The monitoring API: queue depths that rise while no worker consumes and fall when one starts, waits held for later,
task rates per minute, and live workers with the task runs they run named by pipeline, execution, stage and task.

Against the API over HTTP on PostgreSQL and Redis, with real `rollway worker` processes.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from orchestrator.settings import Settings

from rollway_testing import TOKEN, ServedApp, client_for, ended, started, wait_until

Doc = dict[str, Any]
PROJECT = "shop"


def calling(api: ServedApp, web: HTTPServer, name: str = "Release", path: str = "/deploy") -> Doc:
    """A pipeline whose stage `Deliver` has one REST task, `Call`, a GET of `path` (on the http queue)."""
    call = {"type": "REST", "input": {"action": "get", "url": web.url_for(path)}}
    stages = {"Deliver": {"taskOrder": ["Call"], "tasks": {"Call": call}}}
    document = {"name": name, "project": PROJECT, "enabled": True, "concurrency": 100, "stageOrder": ["Deliver"]}
    return api.create(document | {"stages": stages})


def queue(api: ServedApp, name: str) -> Doc:
    answer = api.http.get("/api/monitoring/queues")
    assert answer.status_code == 200, answer.text
    [found] = [item for item in answer.json()["queues"] if item["name"] == name]
    return dict(found)


class HeldAnswer:
    """A web handler that, once asked, answers only when the test lets it."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answer = threading.Event()

    def __call__(self, request: Request) -> Response:
        self.asked.set()
        self.answer.wait(timeout=60)
        return Response('{"ok": true}', content_type="application/json")


def test_queue_depth_rises_while_no_worker_consumes_and_falls_once_one_starts(
    api: ServedApp, worker_factory: Any, web: HTTPServer
) -> None:
    # Given three executions of a pipeline whose one task runs on the http queue, and no worker at all
    web.expect_request("/deploy").respond_with_json({"ok": True})
    pipeline = calling(api, web)
    executions = [started(api.http, pipeline) for _ in range(3)]

    # When the queues are asked for
    before = queue(api, "http")

    # Then the http queue holds the three messages, and nothing runs
    assert before == {"name": "http", "depth": 3, "waiting": 0, "active": 0}

    # When a worker starts
    worker_factory("-c", "2")

    # Then the queue drains, the executions complete, and the minute's throughput counts their task runs
    wait_until(lambda: queue(api, "http")["depth"] == 0, what="the http queue to drain")
    assert [ended(api, execution_id)["status"] for execution_id in executions] == ["COMPLETED"] * 3
    body = api.http.get("/api/monitoring/queues").json()
    assert len(body["throughput"]) == 30
    assert sum(minute["started"] for minute in body["throughput"]) == 3
    assert sum(minute["finished"] for minute in body["throughput"]) == 3
    assert sum(minute["failed"] for minute in body["throughput"]) == 0
    assert body["throughput"][-1]["at"] <= body["at"]


def test_a_poll_between_its_attempts_is_counted_as_waiting_on_its_queue(
    api: ServedApp, worker: Any, web: HTTPServer
) -> None:
    # Given a POLL that is not ready and asks again only after a minute (longer than a sweep: the wait is held in
    # the database, not in the broker)
    web.expect_request("/ready").respond_with_json({"ready": False})
    wait = {
        "url": web.url_for("/ready"),
        "pollCount": 10,
        "pollIntervalSeconds": 60,
        "exitCriteria": {"success": "${responseJson.ready} == true"},
    }
    stages = {"Deliver": {"taskOrder": ["Wait"], "tasks": {"Wait": {"type": "POLL", "input": wait}}}}
    pipeline = api.create(
        {"name": "Slow", "project": PROJECT, "enabled": True, "stageOrder": ["Deliver"]} | {"stages": stages}
    )

    # When it has been asked once
    started(api.http, pipeline)
    wait_until(lambda: len(web.log) >= 1, what="the first poll")

    # Then the http queue shows it waiting, not in the broker and not running
    found = wait_until(lambda: (q := queue(api, "http"))["waiting"] == 1 and q, what="the wait to be counted")
    assert found == {"name": "http", "depth": 0, "waiting": 1, "active": 0}


def test_a_live_worker_is_listed_with_its_queues_pool_and_its_running_task_by_name(
    api: ServedApp, worker_factory: Any, web: HTTPServer
) -> None:
    # Given a worker on the http and default queues, running a task whose web call is held
    held = HeldAnswer()
    web.expect_request("/deploy").respond_with_handler(held)
    worker_factory("-Q", "http,default", "-c", "2")
    execution_id = started(api.http, calling(api, web))
    assert held.asked.wait(timeout=60)

    # When the workers are asked for, by the admin token and by a viewer of another project
    body = api.http.get("/api/monitoring/workers").json()
    with client_for(api, "viewer", "outsider", project="elsewhere") as outsider:
        other = outsider.get("/api/monitoring/workers").json()
    held.answer.set()

    # Then the worker is listed with its queues and pool, its running task as pipeline / stage / task; another
    # project's token sees the worker but not the task
    [listed] = body["workers"]
    assert listed["name"].startswith("rollway-")
    assert listed["queues"] == ["default", "http"]
    assert listed["pool"] == {"implementation": "prefork", "max": 2}
    [task] = listed["active"]
    assert {key: task[key] for key in ("pipeline", "executionId", "executionIndex", "stage", "task", "type")} == {
        "pipeline": "Release",
        "executionId": execution_id,
        "executionIndex": 1,
        "stage": "Deliver",
        "task": "Call",
        "type": "REST",
    }
    assert task["startedAt"] is not None
    [seen] = other["workers"]
    assert (seen["name"], seen["active"]) == (listed["name"], [])

    # And once the task has finished, the worker counts it as processed and runs nothing
    assert ended(api, execution_id)["status"] == "COMPLETED"
    after = wait_until(
        lambda: (w := api.http.get("/api/monitoring/workers").json()["workers"]) and not w[0]["active"] and w[0],
        what="the worker to be idle",
    )
    assert after["processed"] >= 1


def test_without_workers_the_list_is_empty(api: ServedApp) -> None:
    # Given no worker
    # When the workers are asked for
    answer = api.http.get("/api/monitoring/workers")

    # Then the answer says so, after the short broadcast timeout
    assert answer.status_code == 200, answer.text
    assert answer.json()["workers"] == []


def test_queue_depths_are_read_under_the_redis_prefix(settings: Settings) -> None:
    # Given an installation whose Redis keys start with ROLLWAY_REDIS_PREFIX, and a message left in its http queue
    from api.app import create_app

    prefixed = settings.with_changes(redis_prefix="team-a:")
    app = create_app(prefixed)
    app.extensions["rollway"].celery.send_task("rollway.ping", queue="http")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"

    # When its queues are asked for
    try:
        body = client.get("/api/monitoring/queues").get_json()
    finally:
        app.extensions["rollway"].store.dispose()

    # Then the message is counted, where Redis holds it: under the prefix
    assert {item["name"]: item["depth"] for item in body["queues"]}["http"] == 1
    assert redis.Redis.from_url(str(settings.redis_url)).llen("team-a:http") == 1
