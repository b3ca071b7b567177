"""The Pipelines and User operations pages in a real browser: the list with enable and disable, a pipeline drawn in
order with Code Stream's rollback icon on each stage and task that links one, a run started from the form the page
generates from `_inputMeta`, the YAML export; and a pending approval answered with comments from its page.

Against the API over HTTP on PostgreSQL and Redis with a real worker; the browser is Debian's Chromium.
"""

from __future__ import annotations

from typing import Any

import yaml
from pytest_httpserver import HTTPServer

from browser_support import logged_in, screenshot
from rollway_testing import ServedApp, WorkerProcess, ended, token_for, wait_until

Doc = dict[str, Any]
PROJECT = "shop"


def undo_pipeline(api: ServedApp, name: str) -> Doc:
    note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    stages = {"Undo": {"taskOrder": ["Note"], "tasks": note}}
    return api.create({"name": name, "project": PROJECT, "enabled": True, "stageOrder": ["Undo"], "stages": stages})


def release_pipeline(api: ServedApp, url: str) -> Doc:
    """`Release`: stage Build (a check, then Tag and Scan side by side, Tag linking its own rollback) and stage
    Deploy (a GET of `url` with the version and region given as input), whose rollback is `Restore`."""
    undo_pipeline(api, "Restore")
    undo_pipeline(api, "Untag")
    build = {
        "taskOrder": ["Check", "Tag,Scan"],
        "tasks": {
            "Check": {"type": "Condition", "input": {"condition": "1 == 1"}},
            "Tag": {"type": "Condition", "input": {"condition": "1 == 1"}, "rollback": {"pipeline": "Untag"}},
            "Scan": {"type": "Condition", "input": {"condition": "2 > 1"}},
        },
    }
    get = {"action": "get", "url": url + "?version=${input.version}&region=${input.region}"}
    deploy = {
        "taskOrder": ["Deploy"],
        "tasks": {"Deploy": {"type": "REST", "input": get}},
        "rollback": {"pipeline": "Restore"},
    }
    return api.create(
        {
            "name": "Release",
            "project": PROJECT,
            "description": "Builds and ships the shop",
            "enabled": True,
            "input": {"version": "", "region": "eu-west"},
            "_inputMeta": {
                "version": {"mandatory": True, "description": "the image tag to ship"},
                "region": {"description": "where it runs"},
            },
            "stageOrder": ["Build", "Deploy"],
            "stages": {"Build": build, "Deploy": deploy},
        }
    )


def test_a_pipeline_is_drawn_with_its_rollbacks_and_runs_from_its_form(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    web.expect_request("/deploy").respond_with_json({"ok": True})
    pipeline = release_pipeline(api, web.url_for("/deploy"))
    page = logged_in(browser, api.url, next_page="/pipelines")

    # The list: every pipeline, with its state and an enable or disable button
    assert page.url.endswith("/pipelines")
    assert {row.get_attribute("data-pipeline") for row in page.query_selector_all("tr[data-pipeline]")} == {
        "Release",
        "Restore",
        "Untag",
    }
    screenshot(page, "pipelines")

    # Disabling from the list disables it (the API says so); enabling again enables it
    page.click("tr[data-pipeline='Release'] button[data-action='disable']")
    page.wait_for_selector("tr[data-pipeline='Release'] [data-enabled='false']")
    assert api.http.get(f"/api/pipelines/{pipeline['id']}").json()["enabled"] is False
    page.click("tr[data-pipeline='Release'] button[data-action='enable']")
    page.wait_for_selector("tr[data-pipeline='Release'] [data-enabled='true']")
    assert api.http.get(f"/api/pipelines/{pipeline['id']}").json()["enabled"] is True

    # The view: stages in order, the parallel tasks side by side, a rollback icon where a rollback is linked
    page.click("tr[data-pipeline='Release'] a")
    page.wait_for_selector("h1:has-text('Release')")
    stages = [stage.get_attribute("data-stage") for stage in page.query_selector_all("[data-stage]")]
    assert stages == ["Build", "Deploy"]
    build_groups = page.query_selector_all("[data-stage='Build'] .group")
    assert [
        [box.get_attribute("data-task") for box in group.query_selector_all("[data-task]")] for group in build_groups
    ] == [
        ["Check"],
        ["Tag", "Scan"],
    ]
    assert "parallel" in (build_groups[1].get_attribute("class") or "")
    icons = {
        (icon.evaluate("e => e.closest('[data-task]')?.dataset.task || e.closest('[data-stage]').dataset.stage")): (
            icon.get_attribute("data-rollback")
        )
        for icon in page.query_selector_all("[data-rollback]")
    }
    assert icons == {"Tag": "Untag", "Deploy": "Restore"}

    # The form comes from _inputMeta: the mandatory input is marked and required, the default is filled in
    assert page.get_attribute("input[name='input.version']", "required") is not None
    assert page.input_value("input[name='input.region']") == "eu-west"
    assert "the image tag to ship" in page.inner_text("form.run-form")
    screenshot(page, "pipeline")

    # Left empty (the browser's own check taken away), the server refuses naming the input, and nothing runs
    page.evaluate("document.querySelector(\"input[name='input.version']\").removeAttribute('required')")
    page.click("form.run-form button.primary")
    page.wait_for_selector(".flash.error")
    assert "input.version" in page.inner_text("main") and "mandatory" in page.inner_text("main")
    assert api.http.get("/api/executions", params={"pipeline": "Release"}).json() == []

    # Filled in, it runs with what was typed, and the page goes to the new execution
    page.fill("input[name='input.version']", "v2.7.1")
    page.fill("textarea[name=comments]", "ship it from the browser")
    page.click("form.run-form button.primary")
    page.wait_for_selector("h1:has-text('Release #1')")
    execution_id = page.url.rstrip("/").split("/")[-1]
    done = ended(api, execution_id)
    assert done["status"] == "COMPLETED", done
    assert done["comments"] == "ship it from the browser"
    assert done["input"] == {"version": "v2.7.1", "region": "eu-west"}
    [(sent, _answer)] = web.log
    assert sent.args.get("version") == "v2.7.1" and sent.args.get("region") == "eu-west"
    page.context.close()


def test_a_run_whose_rollback_could_not_run_is_refused_unless_an_admin_forces_it_and_the_yaml_exports(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    web.expect_request("/deploy").respond_with_json({"ok": True})
    pipeline = release_pipeline(api, web.url_for("/deploy"))
    # With its rollback pipeline disabled a run is refused naming why; an admin may force it, and the audit log says so
    restore = api.http.get("/api/pipelines", params={"name": "Restore"}).json()[0]
    assert api.http.patch(f"/api/pipelines/{restore['id']}", json={"enabled": False}).status_code == 200
    page = logged_in(browser, api.url, next_page=f"/pipelines/{pipeline['id']}")
    page.fill("input[name='input.version']", "v2.7.2")
    page.click("form.run-form button.primary")
    page.wait_for_selector(".flash.error")
    assert "rollback pipeline 'Restore' is disabled" in page.inner_text("main")
    assert api.http.get("/api/executions", params={"pipeline": "Release"}).json() == []
    page.fill("input[name='input.version']", "v2.7.2")
    page.check("input[name=force]")
    page.click("form.run-form button.primary")
    page.wait_for_selector("h1:has-text('Release #1')")
    forced = ended(api, page.url.rstrip("/").split("/")[-1])
    assert forced["status"] == "COMPLETED" and forced["input"]["version"] == "v2.7.2"
    audit = api.http.get("/api/audit").json()
    assert any("forced" in str(entry) and "Restore" in str(entry) for entry in audit), audit

    # Export: the YAML the API exports, as a download
    page.goto(f"/pipelines/{pipeline['id']}")
    with page.expect_download() as download:
        page.click("a:has-text('Export YAML')")
    exported = yaml.safe_load(download.value.path().read_text(encoding="utf-8"))
    assert exported["name"] == "Release" and exported["stageOrder"] == ["Build", "Deploy"]
    assert exported["stages"]["Deploy"]["rollback"]["pipeline"] == "Restore"
    page.context.close()


def test_a_viewer_sees_pipelines_but_no_button_to_change_or_run_them(api: ServedApp, browser: Any) -> None:
    pipeline = undo_pipeline(api, "Restore")
    page = logged_in(browser, api.url, token_for(api, "viewer", "vic"), next_page="/pipelines")
    assert page.query_selector("tr[data-pipeline='Restore']") is not None
    assert page.query_selector("button[data-action]") is None
    page.goto(f"/pipelines/{pipeline['id']}")
    assert page.query_selector("form.run-form") is None
    # A form posted anyway is refused, and the pipeline stays as it was
    answer = page.request.post(f"/pipelines/{pipeline['id']}/disable", form={"csrf": "x"})
    assert answer.status == 403
    assert api.http.get(f"/api/pipelines/{pipeline['id']}").json()["enabled"] is True
    page.context.close()


def approval_pipeline(api: ServedApp, url: str) -> Doc:
    """`Release`: Approve (a UserOperation) and then Deploy, a GET of `url`."""
    undo_pipeline(api, "Restore")
    ask = {"approvers": ["rel-rita"], "summary": "Release 2.7 to production", "description": "Check the window"}
    stage = {
        "taskOrder": ["Approve", "Deploy"],
        "tasks": {
            "Approve": {"type": "UserOperation", "input": ask},
            "Deploy": {"type": "REST", "input": {"action": "get", "url": url}},
        },
        "rollback": {"pipeline": "Restore"},
    }
    stages = {"Prod": stage}
    return api.create(
        {"name": "Release", "project": PROJECT, "enabled": True, "stageOrder": ["Prod"], "stages": stages}
    )


def test_a_pending_approval_is_approved_with_comments_from_its_page(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    web.expect_request("/deploy").respond_with_json({"ok": True})
    pipeline = approval_pipeline(api, web.url_for("/deploy"))
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    execution_id = answer.json()["executionId"]
    [operation] = wait_until(
        lambda: api.http.get("/api/user-operations", params={"status": "ACTIVE"}).json(), what="the approval"
    )

    page = logged_in(browser, api.url, token_for(api, "executor", "rel-rita"), next_page="/user-operations")
    card = f"[data-operation='{operation['id']}']"
    assert "Release 2.7 to production" in page.inner_text(card)
    assert "Release #1" in page.inner_text(card)
    screenshot(page, "user-operations")

    page.fill(f"{card} textarea[name=comments]", "window is open")
    page.click(f"{card} button[value=approve]")
    page.wait_for_selector(f"tr{card} .badge[data-status='APPROVED']")
    assert "window is open" in page.inner_text(f"tr{card}")
    assert "Nothing waits" in page.inner_text("main")

    answered = api.http.get(f"/api/user-operations/{operation['id']}").json()
    assert answered["status"] == "APPROVED"
    assert answered["respondedBy"] == "rel-rita" and answered["comments"] == "window is open"
    assert ended(api, execution_id)["status"] == "COMPLETED"
    page.context.close()


def test_someone_not_among_the_approvers_is_refused_and_the_approval_stays_pending(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, browser: Any
) -> None:
    pipeline = approval_pipeline(api, web.url_for("/deploy"))
    api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    [operation] = wait_until(
        lambda: api.http.get("/api/user-operations", params={"status": "ACTIVE"}).json(), what="the approval"
    )
    page = logged_in(browser, api.url, token_for(api, "executor", "otto"), next_page="/user-operations")
    card = f"[data-operation='{operation['id']}']"
    page.click(f"{card} button[value=reject]")
    page.wait_for_selector(".flash.error")
    assert "only a listed approver" in page.inner_text(".flash.error")
    assert api.http.get(f"/api/user-operations/{operation['id']}").json()["status"] == "ACTIVE"
    assert page.query_selector(f"section{card}") is not None
    page.context.close()
