"""Project variables through the HTTP API: created, listed, changed and deleted per project and role; SECRET
and RESTRICTED values sealed and never returned; `${var.NAME}` checked when a pipeline is saved and bound when it
runs; and after a real run (a worker, kubesim, a local HTTP server) no secret is in any answer, column or log."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug.serving import make_server

from kubesim import KubeSim
from orchestrator.policy import Role
from orchestrator.schema import events, executions, task_runs, variables
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.tokens import Tokens
from orchestrator.variables import Variables

from rollway_testing import TERMINAL, ServedApp, WorkerProcess, template_request, wait_until

Doc = dict[str, Any]
TOKEN_VALUE = "tok-7Hq2-VARMARKER-91"
DATA_PLAIN = "pw-DATAMARKER-4711"
DATA_B64 = base64.b64encode(DATA_PLAIN.encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def markers() -> list[str]:
    """Every form the two secrets could leak in."""
    return [TOKEN_VALUE, b64(TOKEN_VALUE), DATA_PLAIN, DATA_B64, "VARMARKER", "DATAMARKER"]


def assert_no_secret(where: str, text: str) -> None:
    leaked = [marker for marker in markers() if marker in text]
    assert not leaked, f"{where} holds {leaked}: {text[:2000]}"


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The API's database, read directly (as an operator with database access would)."""
    opened = Store.connect(settings.database_url, settings.secret_key, migrate=False)
    yield opened
    opened.dispose()


def client_as(api: ServedApp, store: Store, role: Role, project: str = "shop") -> httpx.Client:
    """An HTTP client on a stored token of `role` in `project`."""
    _, secret = Tokens(store.engine).add(f"id-{role.value}-{project}", f"{role.value}-bot", project, role, "test")
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def create(http: httpx.Client, body: Doc) -> Doc:
    answer = http.post("/api/variables", json=body)
    assert answer.status_code == 201, answer.text
    created: Doc = answer.json()
    return created


def problem_paths(answer: httpx.Response) -> list[str]:
    return [item["path"] for item in answer.json()["error"]["details"]]


# -- the API


def test_a_regular_value_is_shown_and_a_secret_one_is_sealed_at_rest_and_never_returned(
    api: ServedApp, store: Store
) -> None:
    # When a REGULAR and a SECRET variable are created
    region = create(api.http, {"name": "region", "project": "shop", "type": "REGULAR", "value": "eu-west-1"})
    token = create(
        api.http,
        {"name": "token", "project": "shop", "type": "SECRET", "value": TOKEN_VALUE, "description": "deploy bot"},
    )

    # Then the regular value is shown, the secret one only as *****, in the answer, the detail and the list
    assert (region["type"], region["value"]) == ("REGULAR", "eu-west-1")
    assert (token["type"], token["value"], token["description"]) == ("SECRET", "*****", "deploy bot")
    assert api.http.get(f"/api/variables/{token['id']}").json()["value"] == "*****"
    listed = api.http.get("/api/variables", params={"project": "shop"}).json()
    assert [(item["name"], item["value"]) for item in listed] == [("region", "eu-west-1"), ("token", "*****")]
    assert_no_secret("the variables API", json.dumps(listed))
    # And the database holds the secret sealed, the regular value in the clear
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(variables.c.name, variables.c.value)).all())
    assert stored["region"] == "eu-west-1"
    assert_no_secret("the variables table", stored["token"])
    # And executions of the project get both values
    assert Variables(store.engine, store.vault).values("shop").values == {"region": "eu-west-1", "token": TOKEN_VALUE}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a.b", "value": "x"}, "name"),
        ({"name": "", "value": "x"}, "name"),
        ({"name": "ok", "value": "x", "type": "PUBLIC"}, "type"),
        ({"name": "ok"}, "value"),
        ({"name": "ok", "value": 42}, "value"),
        ({"name": "ok", "value": "", "type": "SECRET"}, "value"),
        ({"name": "ok", "value": "x", "colour": "red"}, "colour"),
        ({"name": "ok", "value": "x", "project": 7}, "project"),
    ],
)
def test_a_bad_variable_is_refused_naming_the_field(api: ServedApp, body: Doc, field: str) -> None:
    # When a variable with a problem is created, Then the answer is 400 naming the field, and nothing is created
    answer = api.http.post("/api/variables", json=body)
    assert answer.status_code == 400, answer.text
    assert field in problem_paths(answer)
    assert api.http.get("/api/variables").json() == []


def test_a_name_taken_in_the_project_is_a_conflict_but_free_in_another(api: ServedApp) -> None:
    # Given a variable `region` in project shop
    create(api.http, {"name": "region", "project": "shop", "value": "eu"})
    # When another is created with that name, in shop and in another project
    again = api.http.post("/api/variables", json={"name": "region", "project": "shop", "value": "us"})
    elsewhere = api.http.post("/api/variables", json={"name": "region", "project": "ops", "value": "us"})
    # Then shop answers 409, the other project has its own
    assert again.status_code == 409 and "region" in again.json()["error"]["message"]
    assert elsewhere.status_code == 201


def test_a_variable_is_changed_and_deleted_and_a_secrets_value_is_kept_unless_given(
    api: ServedApp, store: Store
) -> None:
    # Given a secret variable
    token = create(api.http, {"name": "token", "project": "shop", "type": "SECRET", "value": "first-value"})
    values = Variables(store.engine, store.vault)

    # When only its description changes, Then its value is kept
    answer = api.http.patch(f"/api/variables/{token['id']}", json={"description": "rotated monthly"})
    assert answer.status_code == 200 and answer.json()["description"] == "rotated monthly"
    assert values.values("shop").values == {"token": "first-value"}
    # When its value changes, Then the new one is used, and still not shown
    answer = api.http.patch(f"/api/variables/{token['id']}", json={"value": TOKEN_VALUE})
    assert answer.json()["value"] == "*****"
    assert values.values("shop").values == {"token": TOKEN_VALUE}
    # When it would be made REGULAR without a value, or renamed, Then 400 (a secret is never revealed)
    assert "value" in problem_paths(api.http.patch(f"/api/variables/{token['id']}", json={"type": "REGULAR"}))
    assert "name" in problem_paths(api.http.patch(f"/api/variables/{token['id']}", json={"name": "other"}))
    # When it is deleted, Then it is gone
    assert api.http.delete(f"/api/variables/{token['id']}").status_code == 204
    assert api.http.get(f"/api/variables/{token['id']}").status_code == 404
    assert values.values("shop").values == {}


def test_restricted_variables_are_for_admins_and_other_projects_variables_do_not_exist(
    api: ServedApp, store: Store
) -> None:
    # Given a developer and a viewer of project shop, and the bootstrap admin
    developer = client_as(api, store, Role.DEVELOPER)
    viewer = client_as(api, store, Role.VIEWER)
    secret = {"name": "prod_password", "value": "s3cr3t-value"}

    # When the developer creates a RESTRICTED variable, Then 403; a SECRET one is fine, in its own project
    assert developer.post("/api/variables", json={**secret, "type": "RESTRICTED"}).status_code == 403
    own = create(developer, {**secret, "name": "dev_password", "type": "SECRET"})
    assert own["project"] == "shop"
    # When the admin creates the RESTRICTED one, Then it exists, and the developer may neither change nor delete it
    restricted = create(api.http, {**secret, "project": "shop", "type": "RESTRICTED"})
    assert restricted["value"] == "*****"
    assert developer.patch(f"/api/variables/{restricted['id']}", json={"value": "mine"}).status_code == 403
    assert developer.delete(f"/api/variables/{restricted['id']}").status_code == 403
    assert developer.patch(f"/api/variables/{own['id']}", json={"type": "RESTRICTED"}).status_code == 403
    # And a viewer reads but may not create
    assert viewer.post("/api/variables", json={**secret, "name": "x", "type": "REGULAR"}).status_code == 403
    assert {item["name"] for item in viewer.get("/api/variables").json()} == {"dev_password", "prod_password"}

    # Given a variable of another project
    other = create(api.http, {"name": "ops_token", "project": "ops", "type": "REGULAR", "value": "v"})
    # Then for shop's developer it does not exist: 404 and not listed, even when asked for by project
    assert developer.get(f"/api/variables/{other['id']}").status_code == 404
    assert developer.delete(f"/api/variables/{other['id']}").status_code == 404
    assert developer.get("/api/variables", params={"project": "ops"}).json() == []
    assert developer.post("/api/variables", json={**secret, "name": "y", "project": "ops"}).status_code == 403
    developer.close()
    viewer.close()


def rest_pipeline(name: str, project: str, url: str, **fields: Any) -> Doc:
    return {
        "name": name,
        "project": project,
        "enabled": True,
        "stageOrder": ["Dev"],
        "stages": {
            "Dev": {
                "taskOrder": ["Call"],
                "tasks": {"Call": {"type": "REST", "input": {"action": "get", "url": url, **fields}}},
            }
        },
    }


def test_a_pipeline_may_only_name_variables_its_project_has(api: ServedApp) -> None:
    # Given variable `region` in project shop
    create(api.http, {"name": "region", "project": "shop", "value": "eu"})
    # When pipelines name it in shop, in another project, and name one that does not exist
    good = api.http.post("/api/pipelines", json=rest_pipeline("Good", "shop", "https://x/${var.region}"))
    elsewhere = api.http.post("/api/pipelines", json=rest_pipeline("Other", "ops", "https://x/${var.region}"))
    missing = api.http.post("/api/pipelines", json=rest_pipeline("Missing", "shop", "https://x/${var.zone}"))
    # Then only shop's may run; the others are saved disabled with a warning naming the variable at its path
    assert good.status_code == 201, good.text
    assert good.json()["_warnings"] == []
    for answer, name in ((elsewhere, "region"), (missing, "zone")):
        assert answer.status_code == 201, answer.text
        (warning,) = answer.json()["_warnings"]
        assert warning["path"] == "stages.Dev.tasks.Call.input.url"
        assert f"project variable '{name}' does not exist" in warning["message"]
        assert answer.json()["enabled"] is False


# -- a real run


SECRET_YAML = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: vault-test}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: vault-test}}
type: Opaque
data: {{password: {DATA_B64}}}
stringData: {{token: "${{var.token}}"}}
"""


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        yield sim


def secret_pipeline(hook: str) -> Doc:
    return {
        "name": "Secrets",
        "project": "e2e",
        "enabled": True,
        "output": {"echoed": "${Dev.Call.output.responseJson.echo}"},
        "stageOrder": ["Dev"],
        "stages": {
            "Dev": {
                "taskOrder": ["Create Secret", "Call"],
                "tasks": {
                    "Create Secret": {
                        "type": "K8S",
                        "endpoints": {"kubernetesServer": "dev-cluster"},
                        "input": {"action": "CREATE", "yaml": SECRET_YAML},
                    },
                    "Call": {
                        "type": "REST",
                        "input": {
                            "action": "get",
                            "url": hook,
                            "headers": {"Authorization": "Bearer ${var.token}", "Accept": "application/json"},
                        },
                    },
                },
            }
        },
    }


def every_answer(api: ServedApp, pipeline_id: str, execution_id: str) -> dict[str, str]:
    """The text of every API answer that shows the pipeline or its execution."""
    paths = [
        "/api/pipelines",
        f"/api/pipelines/{pipeline_id}",
        f"/api/pipelines/{pipeline_id}/export",
        "/api/executions",
        f"/api/executions/{execution_id}",
        f"/api/executions/{execution_id}/events",
        "/api/variables",
    ]
    answers = {path: api.http.get(path) for path in paths}
    assert all(answer.status_code == 200 for answer in answers.values()), answers
    return {path: answer.text for path, answer in answers.items()}


def recorded(store: Store) -> dict[str, str]:
    """What the database holds of executions, task runs and events, as read straight from the tables."""
    with store.engine.connect() as conn:
        runs = conn.execute(select(task_runs.c.name, task_runs.c.input, task_runs.c.output, task_runs.c.bindings))
        run_columns = json.dumps([list(row) for row in runs])
        execution_columns = json.dumps(
            [list(row) for row in conn.execute(select(executions.c.input, executions.c.output))]
        )
        messages = json.dumps([row.message for row in conn.execute(select(events.c.message))])
    return {"task_runs": run_columns, "executions": execution_columns, "events": messages}


def test_secrets_a_run_uses_reach_the_cluster_and_the_endpoint_but_no_answer_column_or_log(
    api: ServedApp,
    worker: WorkerProcess,
    web: HTTPServer,
    cluster: KubeSim,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a SECRET variable `token`, the cluster as an endpoint, and a web hook that echoes what it was sent
    create(api.http, {"name": "token", "project": "e2e", "type": "SECRET", "value": TOKEN_VALUE})
    api.create_at("/api/endpoints", {"name": "dev-cluster", "project": "e2e", "url": cluster.url, "insecure": True})
    web.expect_request("/hook").respond_with_json({"echo": TOKEN_VALUE, "ok": True})
    # And a pipeline that creates a Secret (one value written in its YAML, one from the variable) and calls the
    # hook with `Authorization: Bearer ${var.token}`
    pipeline = api.create(secret_pipeline(web.url_for("/hook")))

    # When it runs on a worker
    started = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    assert started.status_code == 202, started.text
    execution_id = started.json()["executionId"]
    done = wait_until(
        lambda: (found := api.http.get(f"/api/executions/{execution_id}").json())["status"] in TERMINAL and found,
        timeout=90,
        what="the run to end",
    )

    # Then it completed with the real values: the hook was sent the token, the cluster holds the Secret's data
    assert done["status"] == "COMPLETED", done
    (sent, _), *_ = web.log
    assert sent.headers["Authorization"] == f"Bearer {TOKEN_VALUE}"
    core = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    held = core.read_namespaced_secret("creds", "vault-test").data
    assert held == {"password": DATA_B64, "token": b64(TOKEN_VALUE)}

    # And the API shows the run and its tasks with the secrets masked, bindings kept
    stage = done["stages"][0]
    call = next(item for item in stage["tasks"] if item["name"] == "Call")
    assert call["input"]["headers"]["Authorization"] == "Bearer *****"
    assert call["output"]["responseJson"] == {"echo": "*****", "ok": True}
    assert done["output"] == {"echoed": "*****"}
    created = next(item for item in stage["tasks"] if item["name"] == "Create Secret")
    assert created["output"]["response"]["secrets"]["creds"]["data"] == {"password": "*****", "token": "*****"}
    shown = api.http.get(f"/api/pipelines/{pipeline['id']}").json()
    assert shown["stages"]["Dev"]["tasks"]["Call"]["input"]["headers"]["Authorization"] == "Bearer ${var.token}"
    # And no answer, no column of the database and no log line holds either secret in any form
    for path, text in every_answer(api, pipeline["id"], execution_id).items():
        assert_no_secret(path, text)
    for table, text in recorded(store).items():
        assert_no_secret(f"the {table} table", text)
    assert_no_secret("the worker's log", worker.log())
    assert_no_secret("the API's log", caplog.text)
    # And the full input was kept for the worker, sealed
    with store.engine.connect() as conn:
        sealed = dict(conn.execute(select(task_runs.c.name, task_runs.c.sealed_input)).all())
    assert sealed["Call"] and sealed["Create Secret"]
    assert_no_secret("the sealed input", json.dumps(sealed))

    # When the pipeline is exported and imported as another, Then it is accepted (the export stays importable)
    exported = yaml.safe_load(api.http.get(f"/api/pipelines/{pipeline['id']}/export").text)
    again = api.http.post("/api/pipelines", json={**exported, "name": "Secrets Again"})
    assert again.status_code == 201, again.text


# -- the smart CD template


TEMPLATE_YAML = f"""
apiVersion: v1
kind: Secret
metadata: {{name: regcred, namespace: shop}}
type: kubernetes.io/dockerconfigjson
data: {{.dockerconfigjson: {DATA_B64}}}
stringData: {{api-token: {TOKEN_VALUE}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "nginx:1.25"}}]
"""


def add_clusters(http: httpx.Client) -> None:
    for name, port in (("dev-cluster", 16443), ("prod-cluster", 16444)):
        body = {"name": name, "project": "shop", "url": f"http://127.0.0.1:{port}", "insecure": True}
        assert http.post("/api/endpoints", json=body).status_code == 201


def test_the_template_keeps_secret_data_in_secret_variables_and_the_pipeline_refers_to_them(
    api: ServedApp, store: Store
) -> None:
    # Given the clusters of project shop
    add_clusters(api.http)
    # When the template is generated from a YAML with a Secret
    created = api.create_at("/api/templates/cd", template_request(TEMPLATE_YAML))

    # Then the Secret's values are SECRET variables of the project, never shown
    listed = api.http.get("/api/variables", params={"project": "shop"}).json()
    names = {item["name"]: item for item in listed}
    assert set(names) == {"RollingUpgrade-Example_regcred_dockerconfigjson", "RollingUpgrade-Example_regcred_api-token"}
    assert all((item["type"], item["value"]) == ("SECRET", "*****") for item in listed)
    assert Variables(store.engine, store.vault).values("shop").values == {
        "RollingUpgrade-Example_regcred_dockerconfigjson": DATA_B64,
        "RollingUpgrade-Example_regcred_api-token": TOKEN_VALUE,
    }
    # And the pipeline's Create Secret task refers to them
    main = api.http.get(f"/api/pipelines/{created['pipeline']['id']}").json()
    task_yaml = main["stages"]["Development"]["tasks"]["Create Secret"]["input"]["yaml"]
    (secret,) = [doc for doc in yaml.safe_load_all(task_yaml) if doc]
    assert secret["data"] == {".dockerconfigjson": "${var.RollingUpgrade-Example_regcred_dockerconfigjson}"}
    assert secret["stringData"] == {"api-token": "${var.RollingUpgrade-Example_regcred_api-token}"}
    # And no pipeline answer or stored document holds the values
    for path in ("/api/pipelines", f"/api/pipelines/{created['pipeline']['id']}/export"):
        assert_no_secret(path, api.http.get(path).text)
    from orchestrator.schema import pipelines

    with store.engine.connect() as conn:
        assert_no_secret("the pipelines table", json.dumps([row.document for row in conn.execute(select(pipelines))]))


@pytest.fixture
def keyless_api(settings: Settings) -> Iterator[ServedApp]:
    """The API on a server without ROLLWAY_SECRET_KEY."""
    from api.app import create_app

    app = create_app(settings.with_changes(secret_key=None))
    served = ServedApp(make_server("127.0.0.1", 0, app, threaded=True))
    yield served
    served.stop()
    app.extensions["rollway"].store.dispose()


def test_without_a_secret_key_secret_data_and_secret_variables_are_refused_and_nothing_is_created(
    keyless_api: ServedApp,
) -> None:
    # Given a server without a secret key
    add_clusters(keyless_api.http)
    # When a template with Secret data is generated, and a SECRET variable created
    template = keyless_api.http.post("/api/templates/cd", json=template_request(TEMPLATE_YAML))
    variable = keyless_api.http.post("/api/variables", json={"name": "t", "type": "SECRET", "value": "v"})
    # Then both are 400 saying the key is needed, and nothing was created
    assert template.status_code == 400 and "ROLLWAY_SECRET_KEY" in template.text
    assert problem_paths(template) == ["kubernetesYaml"]
    assert variable.status_code == 400 and "ROLLWAY_SECRET_KEY" in variable.text
    assert keyless_api.http.get("/api/pipelines").json() == []
    assert keyless_api.http.get("/api/variables").json() == []
    # And a REGULAR variable needs no key
    assert keyless_api.http.post("/api/variables", json={"name": "r", "value": "v"}).status_code == 201
