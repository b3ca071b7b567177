"""The logs: `rollway serve` writes one access line per request (method, path, status, duration, the token's name;
never the token or the query string), and a worker's lines about a task run name its pipeline, execution index,
stage and task.

A real `rollway serve` process and a real worker, on PostgreSQL and Redis.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from orchestrator.settings import Settings

from rollway_testing import SECRET_KEY, TOKEN, ServedApp, WorkerProcess, ended, started, wait_until
from serve_process import ServeProcess, rollway_env


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[ServeProcess]:
    env = rollway_env(
        ROLLWAY_DATABASE_URL=settings.database_url,
        ROLLWAY_REDIS_URL=settings.redis_url or "",
        ROLLWAY_API_TOKEN=TOKEN,
        ROLLWAY_SECRET_KEY=SECRET_KEY,
    )
    process = ServeProcess(env, tmp_path / "serve.log").start()
    yield process
    process.stop()


def access_lines(served: ServeProcess, after: str = "") -> list[str]:
    """The access lines of the server's log, from the first that holds `after` (the start-up probe's left out)."""
    lines = [line for line in served.log().splitlines() if "rollway.access" in line]
    return next((lines[n:] for n, line in enumerate(lines) if after and after in line), [] if after else lines)


def test_each_request_is_logged_with_its_status_duration_and_token_name_but_never_the_token(
    served: ServeProcess,
) -> None:
    # Given a server, and a viewer token made by the admin
    admin = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    made = admin.post("/api/tokens", json={"name": "night-watch", "project": "shop", "role": "viewer"})
    assert made.status_code == 201, made.text
    viewer_token = made.json()["token"]

    # When the viewer lists executions with a secret in the query, someone presents a wrong token, the viewer tries
    # to create a pipeline, and a probe asks /healthz
    listed = httpx.get(
        f"{served.url}/api/executions?status=RUNNING&token=hunter2-query-secret",
        headers={"Authorization": f"Bearer {viewer_token}"},
    )
    refused = httpx.get(f"{served.url}/api/pipelines", headers={"Authorization": "Bearer wrong-token-value"})
    forbidden = httpx.post(f"{served.url}/api/pipelines", json={}, headers={"Authorization": f"Bearer {viewer_token}"})
    health = httpx.get(f"{served.url}/healthz")
    admin.close()
    assert (listed.status_code, refused.status_code, forbidden.status_code, health.status_code) == (200, 401, 403, 200)

    # Then each request has its line, at INFO, with method, path, status, duration and the token's name
    lines = wait_until(
        lambda: (found := access_lines(served, "POST /api/tokens")) and len(found) >= 5 and found, what="access lines"
    )
    pattern = r"INFO rollway\.access {} \d+\.\dms token={}$"
    expected = [
        ("POST /api/tokens 201", "admin"),
        ("GET /api/executions 200", "night-watch"),
        ("GET /api/pipelines 401", "-"),
        ("POST /api/pipelines 403", "night-watch"),
        ("GET /healthz 200", "-"),
    ]
    for (request, who), line in zip(expected, lines, strict=True):
        assert re.search(pattern.format(re.escape(request), re.escape(who)), line), line
    # And no token, nor what the query carried, is in the log
    log = served.log()
    for secret in (TOKEN, viewer_token, "wrong-token-value", "hunter2-query-secret"):
        assert secret not in log


def test_a_path_with_a_newline_cannot_write_a_line_of_its_own(served: ServeProcess) -> None:
    # Given a server
    # When a path holds an encoded newline followed by a forged line
    httpx.get(f"{served.url}/api/x%0aINFO rollway.access GET /forged 200", headers={"Authorization": f"Bearer {TOKEN}"})

    # Then the request is one line, its newline escaped
    [line] = wait_until(lambda: access_lines(served, "/api/x"), what="the access line")
    assert "/api/x\\nINFO rollway.access GET /forged 200 404" in line


def test_worker_lines_about_a_task_run_name_its_pipeline_execution_stage_and_task(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a pipeline with a REST task
    web.expect_request("/deploy").respond_with_json({"ok": True})
    call = {"type": "REST", "input": {"action": "get", "url": web.url_for("/deploy")}}
    document: dict[str, Any] = {"name": "Release", "project": "shop", "enabled": True, "stageOrder": ["Ship It"]}
    pipeline = api.create(
        document | {"stages": {"Ship It": {"taskOrder": ["Call Home"], "tasks": {"Call Home": call}}}}
    )

    # When it runs twice
    first, second = started(api.http, pipeline), started(api.http, pipeline)
    assert [ended(api, first)["status"], ended(api, second)["status"]] == ["COMPLETED", "COMPLETED"]

    # Then the worker's lines about each run name it: Celery's received/succeeded lines and Rollway's own (Celery
    # writes "succeeded" once the task has returned, which may be just after the run has ended)
    log = wait_until(lambda: (text := worker.log()).count("] succeeded in ") >= 2 and text, what="both lines")
    for index in (1, 2):
        name = f"Release #{index} / Ship It / Call Home"
        assert re.search(rf"Task rollway\.run_task\[{name}\]\[[0-9a-f-]+\] received", log), log
        assert re.search(rf"Task rollway\.run_task\[{name}\]\[[0-9a-f-]+\] succeeded", log), log
        assert re.search(rf"\[{name}\] task run [0-9a-f-]+ attempt 1: running its REST task", log), log
        assert re.search(rf"\[{name}\] task run [0-9a-f-]+ attempt 1: succeeded", log), log
