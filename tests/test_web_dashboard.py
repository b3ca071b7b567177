"""The Dashboard in a real browser: a pipeline that delivered, failed (and was rolled back), then delivered again
shows its counts, its success rate and its delivery metrics; its rollback run is part of that delivery and gets no
card; a viewer of another project sees none of it; a bad period is a 400 page naming the choices.

Against the API over HTTP on PostgreSQL and Redis with a real worker; the browser is Debian's Chromium.
"""

from __future__ import annotations

from typing import Any

import httpx
from pytest_httpserver import HTTPServer
from werkzeug import Response

from browser_support import logged_in, screenshot
from rollway_testing import TOKEN, ServedApp, WorkerProcess, ended, started, token_for

Doc = dict[str, Any]
PROJECT = "shop"


def release(api: ServedApp, web: HTTPServer, answers: list[int]) -> Doc:
    """`Release`: one REST GET answered with `answers[0]` (a 500 fails it), rolled back by `Release_Rollback`."""
    web.expect_request("/deploy").respond_with_handler(lambda _request: Response("deploy", status=answers[0]))
    note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    api.create(
        {
            "name": "Release_Rollback",
            "project": PROJECT,
            "enabled": True,
            "stageOrder": ["Undo"],
            "stages": {"Undo": {"taskOrder": ["Note"], "tasks": note}},
        }
    )
    deploy = {"Deploy": {"type": "REST", "input": {"action": "get", "url": web.url_for("/deploy")}}}
    return api.create(
        {
            "name": "Release",
            "project": PROJECT,
            "enabled": True,
            "stageOrder": ["Deploy"],
            "stages": {
                "Deploy": {"taskOrder": ["Deploy"], "tasks": deploy, "rollback": {"pipeline": "Release_Rollback"}}
            },
        }
    )


def run_to_end(api: ServedApp, pipeline: Doc) -> str:
    status: str = ended(api, started(api.http, pipeline))["status"]
    return status


def card_text(page: Any, pipeline: str, part: str) -> str:
    text: str = page.inner_text(f"section[data-pipeline='{pipeline}'] {part}")
    return text.strip()


def test_a_pipeline_card_shows_its_deliveries_and_a_viewer_elsewhere_sees_none(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    # Given: Release delivered, failed and was rolled back, then delivered again; one run of a pipeline elsewhere
    answers = [200]
    pipeline = release(api, web, answers)
    assert run_to_end(api, pipeline) == "COMPLETED"
    answers[0] = 500
    assert run_to_end(api, pipeline) == "ROLLBACK_COMPLETED"
    answers[0] = 200
    assert run_to_end(api, pipeline) == "COMPLETED"
    check = {"Check": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    elsewhere = api.create(
        {
            "name": "Elsewhere",
            "project": "other",
            "enabled": True,
            "stageOrder": ["Only"],
            "stages": {"Only": {"taskOrder": ["Check"], "tasks": check}},
        }
    )
    assert run_to_end(api, elsewhere) == "COMPLETED"

    # When
    page = logged_in(browser, api.url, next_page="/dashboard")

    # Then
    assert card_text(page, "Release", "[data-count='COMPLETED'] b") == "2"
    assert card_text(page, "Release", "[data-count='ROLLBACK_COMPLETED'] b") == "1"
    assert card_text(page, "Release", "[data-rate]") == "67%"
    for metric in ("mttd", "mtbd", "mttf", "mttr"):
        assert card_text(page, "Release", f"[data-metric='{metric}'] dd") != "no data", metric
    bar = page.get_attribute("section[data-pipeline='Release'] svg.statusbar", "aria-label")
    assert bar == "3 executions: 2 COMPLETED, 1 ROLLBACK_COMPLETED"
    per_day = str(page.get_attribute("section[data-pipeline='Release'] svg.daychart", "aria-label"))
    assert "delivered" in per_day and "1 failed" in per_day, per_day
    assert page.query_selector("section[data-pipeline='Release_Rollback']") is None, "a rollback run is no delivery"
    assert page.query_selector("section[data-pipeline='Elsewhere']") is not None
    page.select_option("select[name=pipeline]", "Elsewhere")
    page.click("form.filters button")
    page.wait_for_url("**pipeline=Elsewhere**")
    assert page.query_selector("section[data-pipeline='Release']") is None, "the filter keeps to one pipeline"
    page.click("nav a:has-text('Dashboard')")
    page.wait_for_selector("section[data-pipeline='Release']")
    screenshot(page, "dashboard")

    page.context.close()
    elsewhere_viewer = token_for(api, "viewer", "viewer-elsewhere", project="other")
    viewer = logged_in(browser, api.url, elsewhere_viewer, next_page="/dashboard?period=24h")
    assert "last 24 hours" in viewer.inner_text(".heading")
    assert viewer.query_selector("section[data-pipeline='Release']") is None
    assert card_text(viewer, "Elsewhere", "[data-rate]") == "100%"
    assert card_text(viewer, "Elsewhere", "[data-metric='mttr'] dd") == "no data"
    viewer.context.close()


def test_a_period_not_offered_is_a_400_page_naming_the_choices(api: ServedApp) -> None:
    with httpx.Client(base_url=api.url) as client:
        form = client.get("/login")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        client.post("/login", data={"token": TOKEN, "csrf": csrf, "next": "/dashboard"})

        answer = client.get("/dashboard", params={"period": "1y"})

    assert answer.status_code == 400
    assert "period &#39;1y&#39; is not one of" in answer.text
    for choice in ("24h", "7d", "30d"):
        assert choice in answer.text
