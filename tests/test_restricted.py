"""Restricted variables and endpoints: a non-admin's run that is about to use one waits for an admin's approval.

Code Stream's rule: the task that uses a RESTRICTED variable (or a restricted endpoint) is held, the execution
shows WAITING with an ACTIVE user operation; an admin approves (the task runs with the real value) or rejects
(the task fails, so its stage rolls back). Stories run against the API over HTTP on PostgreSQL and Redis, with
a real worker, a local HTTP server for REST tasks and kubesim for K8S ones; tokens are made through the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from kubesim import KubeSim
from orchestrator.engine import Engine
from orchestrator.schema import task_runs
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.sweep import Sweeper
from workers.celery_app import make_celery
from workers.dispatcher import CeleryDispatcher

from rollway_testing import ServedApp, WorkerProcess, client_for, ended, execution, started, task_of, waits

Doc = dict[str, Any]
PROJECT = "shop"
DB_PASSWORD = "pw-RESTRICTEDMARK-2291"
WAITING_FOR_DB = "waiting for an admin to approve the use of restricted variable 'db'"

CONFIG_YAML = """
apiVersion: v1
kind: Namespace
metadata: {name: guarded}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: guarded}
data: {mode: "production"}
"""


# -- helpers


@pytest.fixture
def developer(api: ServedApp) -> Iterator[httpx.Client]:
    with client_for(api, "developer", "dev-dana") as client:
        yield client


@pytest.fixture
def executor(api: ServedApp) -> Iterator[httpx.Client]:
    with client_for(api, "executor", "exec-eli") as client:
        yield client


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The API's database, read directly."""
    opened = Store.connect(settings.database_url, settings.secret_key, migrate=False)
    yield opened
    opened.dispose()


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        yield sim


def database_pipeline(api: ServedApp, url: str) -> Doc:
    """A pipeline whose REST task sends `${var.db}` (RESTRICTED) to `url`; its stage's rollback is `Restore`."""
    restore = {
        "name": "Restore",
        "project": PROJECT,
        "enabled": True,
        "input": {"reason": ""},
        "stageOrder": ["Undo"],
        "stages": {
            "Undo": {"taskOrder": ["Note"], "tasks": {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}}
        },
    }
    api.create(restore)
    api.create_at("/api/variables", {"name": "db", "project": PROJECT, "type": "RESTRICTED", "value": DB_PASSWORD})
    call = {"type": "REST", "input": {"action": "get", "url": url, "headers": {"X-Db-Password": "${var.db}"}}}
    stage = {
        "taskOrder": ["Migrate"],
        "tasks": {"Migrate": call},
        "rollback": {"pipeline": "Restore", "input": {"reason": "migration refused"}},
    }
    document = {
        "name": "Migrate DB",
        "project": PROJECT,
        "enabled": True,
        "stageOrder": ["Prod"],
        "stages": {"Prod": stage},
    }
    return api.create(document)


def active_operations(client: httpx.Client) -> list[Doc]:
    answer = client.get("/api/user-operations", params={"status": "ACTIVE"})
    assert answer.status_code == 200, answer.text
    found: list[Doc] = answer.json()
    return found


def answer(client: httpx.Client, operation: Doc, action: str, comments: str = "") -> httpx.Response:
    return client.post(f"/api/user-operations/{operation['id']}", json={"action": action, "comments": comments})


# -- restricted variables


def test_a_developers_run_that_uses_a_restricted_variable_waits_for_an_admin_to_approve_it(
    api: ServedApp,
    worker: WorkerProcess,
    web: HTTPServer,
    developer: httpx.Client,
    executor: httpx.Client,
    settings: Settings,
    store: Store,
) -> None:
    # Given a pipeline whose REST task sends the RESTRICTED variable `db` to a local server
    web.expect_request("/migrate").respond_with_json({"ok": True})
    pipeline = database_pipeline(api, web.url_for("/migrate"))

    # When a developer runs it
    execution_id = started(developer, pipeline)

    # Then the execution waits with a clear message, the task is held and an ACTIVE user operation asks an admin
    view = waits(api, execution_id)
    assert view["statusMessage"] == f"task Prod.Migrate is {WAITING_FOR_DB}"
    held = task_of(view, "Prod", "Migrate")
    assert (held["status"], held["statusMessage"]) == ("WAITING", WAITING_FOR_DB)
    [operation] = active_operations(developer)
    assert (operation["kind"], operation["status"], operation["summary"]) == ("RESTRICTED", "ACTIVE", WAITING_FOR_DB)
    assert (operation["executionId"], operation["stage"], operation["task"]) == (execution_id, "Prod", "Migrate")
    assert (operation["requestedBy"], operation["respondedBy"], operation["pipeline"]) == (
        "dev-dana",
        None,
        "Migrate DB",
    )
    # ... and a sweep pass neither sends nor reclaims the held run
    engine = Engine(store, CeleryDispatcher(make_celery(settings)), settings.sweep_seconds)
    Sweeper(engine, settings.lease_seconds).sweep()
    with store.engine.connect() as conn:
        row = conn.execute(select(task_runs).where(task_runs.c.execution_id == execution_id)).one()
    assert (row.status, row.sent_at, row.dispatch_after, row.lease_expires_at) == ("WAITING", None, None, None)
    assert web.log == []

    # When the developer, then an executor, try to approve it
    refused = [answer(client, operation, "approve", "looks fine to me") for client in (developer, executor)]

    # Then both are refused, and it still waits
    assert [item.status_code for item in refused] == [403, 403], [item.text for item in refused]
    assert "only an admin" in refused[0].json()["error"]["message"]
    assert [item["id"] for item in active_operations(api.http)] == [operation["id"]]
    assert execution(api, execution_id)["status"] == "WAITING"

    # When an admin approves it
    approved = answer(api.http, operation, "approve", "change window CHG-42")

    # Then the user operation is answered, the task runs with the real value and the execution completes
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["respondedBy"], body["comments"]) == ("APPROVED", "admin", "change window CHG-42")
    assert body["respondedAt"] is not None
    done = ended(api, execution_id)
    assert done["status"] == "COMPLETED", done
    [(sent, _)] = web.log
    assert sent.headers["X-Db-Password"] == DB_PASSWORD
    assert active_operations(api.http) == []
    # ... its history names who approved it, and the value shows nowhere
    history = api.http.get(f"/api/executions/{execution_id}/events").json()
    assert {"status": "QUEUED", "previous": "WAITING", "actor": "admin"}.items() <= next(
        event for event in history if event["task"] == "Migrate" and event["previous"] == "WAITING"
    ).items()
    assert any(
        event["status"] == "RUNNING" and event["previous"] == "WAITING" for event in history if not event["task"]
    )
    assert DB_PASSWORD not in api.http.get(f"/api/executions/{execution_id}").text + str(history)

    # When it is answered again, Then that is a conflict
    again = answer(api.http, operation, "reject")
    assert again.status_code == 409, again.text


def test_an_admin_who_rejects_it_fails_the_task_and_the_stage_rolls_back(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, developer: httpx.Client
) -> None:
    # Given the pipeline, run by a developer and waiting for an admin
    web.expect_request("/migrate").respond_with_json({"ok": True})
    pipeline = database_pipeline(api, web.url_for("/migrate"))
    execution_id = started(developer, pipeline)
    waits(api, execution_id)
    [operation] = active_operations(api.http)

    # When an admin rejects it
    rejected = answer(api.http, operation, "reject", "not during the sale")

    # Then the task fails with who rejected it and why, the stage's rollback runs, and nothing was sent
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["respondedBy"]) == ("REJECTED", "admin")
    done = ended(api, execution_id)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    failed = task_of(done, "Prod", "Migrate")
    assert (failed["status"], failed["statusMessage"]) == ("FAILED", "rejected by admin: not during the sale")
    rollback = execution(api, done["rollbackExecutionId"])
    assert (rollback["pipeline"], rollback["status"]) == ("Restore", "COMPLETED")
    assert web.log == []


def test_the_same_pipeline_run_by_an_admin_does_not_wait(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given the pipeline, and an admin of the project (a token made through the API)
    web.expect_request("/migrate").respond_with_json({"ok": True})
    pipeline = database_pipeline(api, web.url_for("/migrate"))

    with client_for(api, "admin", "admin-ada") as admin:
        # When the admin runs it
        execution_id = started(admin, pipeline)

        # Then it completes without waiting, the server got the value, and no user operation was made
        done = ended(api, execution_id)
        assert done["status"] == "COMPLETED", done
        history = api.http.get(f"/api/executions/{execution_id}/events").json()
        assert all(event["status"] != "WAITING" for event in history)
        [(sent, _)] = web.log
        assert sent.headers["X-Db-Password"] == DB_PASSWORD
        assert admin.get("/api/user-operations").json() == []


def test_canceling_a_waiting_execution_cancels_its_user_operation(api: ServedApp, developer: httpx.Client) -> None:
    # Given a developer's run waiting for an admin (no worker: nothing would run anyway)
    pipeline = database_pipeline(api, "http://127.0.0.1:9/never")
    execution_id = started(developer, pipeline)
    waits(api, execution_id)
    [operation] = active_operations(api.http)

    # When the developer cancels it
    canceled = developer.post(f"/api/executions/{execution_id}/cancel")

    # Then the execution, its held task and the user operation are canceled, and it can no longer be answered
    assert canceled.status_code == 202, canceled.text
    view = execution(api, execution_id)
    assert (view["status"], task_of(view, "Prod", "Migrate")["status"]) == ("CANCELED", "CANCELED")
    found = api.http.get(f"/api/user-operations/{operation['id']}").json()
    assert found["status"] == "CANCELED"
    assert active_operations(api.http) == []
    assert answer(api.http, operation, "approve").status_code == 409


def test_a_bad_answer_or_filter_is_refused_naming_the_problem(api: ServedApp, developer: httpx.Client) -> None:
    # Given a waiting user operation
    pipeline = database_pipeline(api, "http://127.0.0.1:9/never")
    waits(api, started(developer, pipeline))
    [operation] = active_operations(api.http)

    # When it is answered with an unknown action and comments that are not text, or listed by an unknown status
    bad = api.http.post(f"/api/user-operations/{operation['id']}", json={"action": "maybe", "comments": 7})
    unknown = api.http.get("/api/user-operations", params={"status": "PONDERING"})

    # Then each is a 400 naming the problem, and it still waits
    assert bad.status_code == 400, bad.text
    assert {item["path"] for item in bad.json()["error"]["details"]} == {"action", "comments"}
    assert unknown.status_code == 400 and "PONDERING" in unknown.json()["error"]["message"]
    assert api.http.get("/api/user-operations/no-such-id").status_code == 404
    assert [item["id"] for item in active_operations(api.http)] == [operation["id"]]


# -- restricted endpoints


def test_a_k8s_task_on_a_restricted_endpoint_waits_for_an_admin_and_deploys_once_approved(
    api: ServedApp, worker: WorkerProcess, cluster: KubeSim, developer: httpx.Client
) -> None:
    # Given a restricted endpoint (an admin marked it) and a pipeline whose K8S task creates a ConfigMap on it
    endpoint = {"name": "prod-cluster", "project": PROJECT, "url": cluster.url, "insecure": True, "restricted": True}
    assert api.create_at("/api/endpoints", endpoint)["restricted"] is True
    deploy = {
        "type": "K8S",
        "endpoints": {"kubernetesServer": "prod-cluster"},
        "input": {"action": "CREATE", "yaml": CONFIG_YAML},
    }
    stage = {"taskOrder": ["Deploy"], "tasks": {"Deploy": deploy}}
    document = {
        "name": "Configure",
        "project": PROJECT,
        "enabled": True,
        "stageOrder": ["Prod"],
        "stages": {"Prod": stage},
    }
    pipeline = api.create(document)
    core = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))

    # When a developer runs it
    execution_id = started(developer, pipeline)

    # Then it waits for an admin, naming the endpoint, and nothing reached the cluster
    view = waits(api, execution_id)
    message = "waiting for an admin to approve the use of restricted endpoint 'prod-cluster'"
    assert task_of(view, "Prod", "Deploy")["statusMessage"] == message
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("settings", "guarded")
    assert missing.value.status == 404
    [operation] = active_operations(developer)
    assert answer(developer, operation, "approve").status_code == 403

    # When an admin approves it
    assert answer(api.http, operation, "approve").status_code == 200

    # Then the task deploys and the execution completes
    done = ended(api, execution_id)
    assert done["status"] == "COMPLETED", done
    assert core.read_namespaced_config_map("settings", "guarded").data == {"mode": "production"}


def test_only_an_admin_may_mark_an_endpoint_restricted_or_change_one_that_is(
    api: ServedApp, developer: httpx.Client
) -> None:
    body = {"project": PROJECT, "url": "https://10.0.0.9:6443", "insecure": True}

    # When a developer creates a restricted endpoint, Then that is refused and nothing is created
    refused = developer.post("/api/endpoints", json=body | {"name": "prod", "restricted": True})
    assert refused.status_code == 403, refused.text
    assert "only an admin" in refused.json()["error"]["message"]
    assert api.http.get("/api/endpoints").json() == []

    # Given an endpoint the developer made, unrestricted
    made = developer.post("/api/endpoints", json=body | {"name": "dev"})
    assert made.status_code == 201 and made.json()["restricted"] is False, made.text
    path = f"/api/endpoints/{made.json()['id']}"

    # When the developer marks it restricted, Then that is refused
    assert developer.patch(path, json={"restricted": True}).status_code == 403
    assert api.http.get(path).json()["restricted"] is False

    # When an admin marks it, Then it is restricted, and the developer may neither change, unmark nor delete it
    marked = api.http.patch(path, json={"restricted": True})
    assert (marked.status_code, marked.json()["restricted"]) == (200, True), marked.text
    assert developer.patch(path, json={"url": "https://10.0.0.10:6443"}).status_code == 403
    assert developer.patch(path, json={"restricted": False}).status_code == 403
    assert developer.delete(path).status_code == 403
    assert api.http.get(path).json()["url"] == "https://10.0.0.9:6443"

    # And a flag that is not a boolean is a 400 naming the field
    bad = api.http.patch(path, json={"restricted": "yes"})
    assert bad.status_code == 400 and [item["path"] for item in bad.json()["error"]["details"]] == ["restricted"]
