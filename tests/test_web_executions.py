"""The Executions pages in a real browser: logging in with a token, the list turning ROLLBACK_COMPLETED live (no
reload) as the worker fails a task and the rollback runs, the links between a run and its rollback, the detail's
stages, tasks and history; and what the session guards: HttpOnly SameSite cookie, CSRF on forms, no open
redirect, only the token's project, no buttons a role may not press.

Against the API over HTTP on PostgreSQL and Redis with a real worker; the browser is Debian's Chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pytest_httpserver import HTTPServer

from orchestrator.settings import Settings

from browser_support import logged_in, screenshot
from rollway_testing import ServedApp, WorkerProcess, ended, settings_env, started, token_for
from serve_process import ServeProcess

Doc = dict[str, Any]
PROJECT = "shop"


def failing_release(api: ServedApp, web: HTTPServer) -> Doc:
    """`Release`: Deploy (a GET answered 500, so it fails) in stage Deploy, whose rollback is `Release_Rollback`."""
    web.expect_request("/deploy").respond_with_data("broken", status=500)
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


def test_the_list_turns_rollback_completed_without_a_reload_and_links_both_ways(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    pipeline = failing_release(api, web)
    page = logged_in(browser, api.url)
    page.goto("/executions")
    page.evaluate("window.rollwayMarker = 'same page'")
    page.wait_for_selector("[data-live-indicator].on")

    execution_id = started(api.http, pipeline)
    row = f"tr[data-execution='{execution_id}']"
    page.wait_for_selector(f"{row} .badge[data-status='ROLLBACK_COMPLETED']", timeout=60_000)
    assert page.evaluate("window.rollwayMarker") == "same page", "the page reloaded instead of updating itself"
    assert "Release #1" in page.inner_text(row)
    assert ended(api, execution_id)["status"] == "ROLLBACK_COMPLETED"
    screenshot(page, "executions")

    page.click(f"{row} a[data-link='rolled-back-by']")
    page.wait_for_selector("h1:has-text('Release_Rollback #1')")
    assert "COMPLETED" in page.inner_text(".heading")
    page.click("a[data-link='parent']")
    page.wait_for_selector("h1:has-text('Release #1')")
    body = page.inner_text("main")
    assert "ROLLBACK_COMPLETED" in body
    assert "Deploy" in body and "REST" in body
    page.click("details.task summary")
    assert "500" in page.inner_text("details.task"), "the failed task's error is shown"
    assert "History" in body
    screenshot(page, "execution")


def test_login_refuses_a_bad_token_and_keeps_a_viewer_to_its_project(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    pipeline = failing_release(api, web)
    execution_id = started(api.http, pipeline)
    ended(api, execution_id)

    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=api.url)
    page = context.new_page()
    page.goto("/executions")
    page.wait_for_url("**/login**")
    screenshot(page, "login")
    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")

    viewer = logged_in(browser, api.url, token_for(api, "viewer", "viewer-elsewhere", project="other"))
    assert viewer.query_selector(f"tr[data-execution='{execution_id}']") is None
    viewer.goto(f"/executions/{execution_id}")
    assert "Not found" in viewer.inner_text("h1")

    shop_viewer = logged_in(browser, api.url, token_for(api, "viewer", "viewer-shop"))
    shop_viewer.goto(f"/executions/{execution_id}")
    assert "Release #1" in shop_viewer.inner_text("h1")
    assert shop_viewer.query_selector(".actions button") is None, "a viewer is offered no action"

    executor = logged_in(browser, api.url, token_for(api, "executor", "executor-shop"))
    executor.goto(f"/executions/{execution_id}")
    executor.click(".actions button:has-text('Rerun')")
    executor.wait_for_selector("h1:has-text('Release #2')")


def test_the_session_cookie_is_http_only_and_forms_need_their_csrf_token(api: ServedApp) -> None:
    with httpx.Client(base_url=api.url, follow_redirects=False) as client:
        assert client.get("/executions").status_code == 302
        form = client.get("/login?next=https://evil.example/")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        assert 'value="/executions"' in form.text, "a login never sends anyone to another site"
        refused = client.post("/login", data={"token": api.http.headers["Authorization"][7:]})
        assert refused.status_code == 403
        answer = client.post(
            "/login", data={"token": api.http.headers["Authorization"][7:], "csrf": csrf, "next": "//evil.example"}
        )
        assert answer.status_code == 302 and answer.headers["Location"] == "/executions"
        cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert api.http.headers["Authorization"][7:] not in cookie, "the cookie never shows the token"
        assert client.get("/executions").status_code == 200
        assert client.get("/api/pipelines").status_code == 200, "the pages' scripts read the API with the cookie"
        assert client.post("/api/pipelines", json={"name": "x"}).status_code == 401, "but change nothing with it"
        assert client.post("/executions/nope/cancel", data={}).status_code == 403


def test_an_installed_rollway_serve_serves_the_pages_with_their_files(settings: Settings, tmp_path: Path) -> None:
    """The templates and static files ship in the package: `rollway serve` as installed renders the login page,
    its style sheet and script, and sends anyone not logged in there."""
    served = ServeProcess(settings_env(settings), tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=served.url, follow_redirects=False) as client:
            assert client.get("/executions").headers["Location"].startswith("/login")
            login = client.get("/login")
            assert login.status_code == 200 and 'name="token"' in login.text
            assert "badge" in client.get("/static/rollway.css").text
            assert "EventSource" in client.get("/static/rollway.js").text
    finally:
        served.stop()
