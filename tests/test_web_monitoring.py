"""The Monitoring page in a real browser: the live worker with its queues and the task it is running shown as
pipeline / stage / task; a queue's depth rising while no worker consumes and falling when one returns; the page
refreshing itself throughout (no reload).

Against the API over HTTP on PostgreSQL and Redis with real `rollway worker` processes; Debian's Chromium.
"""

from __future__ import annotations

import threading
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from browser_support import logged_in, screenshot
from rollway_testing import ServedApp, ended, started

PROJECT = "shop"


def test_monitoring_shows_the_worker_its_task_and_a_queue_that_fills_and_drains(
    api: ServedApp, worker_factory: Any, web: HTTPServer, browser: Any
) -> None:
    held = threading.Event()
    asked = threading.Event()

    def slow(request: Request) -> Response:
        asked.set()
        held.wait(timeout=60)
        return Response("{}", content_type="application/json")

    web.expect_request("/deploy").respond_with_handler(slow)
    deploy = {"Deploy": {"type": "REST", "input": {"action": "get", "url": web.url_for("/deploy")}}}
    held_pipeline = api.create(
        {
            "name": "Release",
            "project": PROJECT,
            "enabled": True,
            "stageOrder": ["Ship"],
            "stages": {"Ship": {"taskOrder": ["Deploy"], "tasks": deploy}},
        }
    )
    note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    quick = api.create(
        {
            "name": "Quick",
            "project": PROJECT,
            "enabled": True,
            "stageOrder": ["Check"],
            "stages": {"Check": {"taskOrder": ["Note"], "tasks": note}},
        }
    )
    worker = worker_factory("-c", "2")
    page = logged_in(browser, api.url)
    page.goto("/monitoring")
    page.evaluate("window.rollwayMarker = 'same page'")
    page.wait_for_selector("[data-worker]")
    assert "default" in page.inner_text("[data-worker]")

    running = started(api.http, held_pipeline)
    assert asked.wait(timeout=60)
    page.wait_for_selector("[data-worker] .active-tasks li:has-text('Ship / Deploy')")
    assert "Release #1" in page.inner_text("[data-worker] .active-tasks")
    held.set()
    ended(api, running)

    worker.stop()
    page.wait_for_selector("[data-no-workers]", timeout=60_000)
    waiting = [started(api.http, quick) for _ in range(3)]
    page.wait_for_function(
        "Number(document.querySelector(\"tr[data-queue='default'] [data-depth]\").dataset.depth) >= 3",
        timeout=60_000,
    )

    worker_factory("-c", "2")
    for execution_id in waiting:
        assert ended(api, execution_id)["status"] == "COMPLETED"
    page.wait_for_function(
        "Number(document.querySelector(\"tr[data-queue='default'] [data-depth]\").dataset.depth) === 0",
        timeout=60_000,
    )
    page.wait_for_selector("[data-worker]")
    assert page.evaluate("window.rollwayMarker") == "same page", "the page refreshed itself without a reload"
    page.wait_for_selector(".chart rect.bar-ok:not([height='0.0'])")
    screenshot(page, "monitoring")
    # The page stops refreshing before the server stops: no request of it is left under way at teardown.
    page.context.close()
