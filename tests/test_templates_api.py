"""The smart CD template through the HTTP API and the command line: what a YAML holds, generating a release
pipeline with its rollback pipelines, and every invalid request answered 400 (or 409) with nothing created.

Stories run against the API served over HTTP on PostgreSQL and Redis, without a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from api.cli import cli
from kubesim import KubeSim

from rollway_testing import TOKEN, ServedApp, template_request

Doc = dict[str, Any]
NAME = "RollingUpgrade-Example"
ROLLBACKS = [f"{NAME}_Dev_Rollback", f"{NAME}_Prod_Rollback"]
DEV_URL, PROD_URL = "http://127.0.0.1:16443", "http://127.0.0.1:16444"

APP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Secret
metadata: {name: regcred, namespace: shop}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: e30=}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.25"}]
"""


def request_body(**changes: Any) -> Doc:
    return template_request(APP, **changes)


@pytest.fixture
def endpoints(api: ServedApp) -> list[Doc]:
    """The dev and prod clusters of project shop (nothing listens there unless a test starts a cluster for them)."""
    return [
        api.create_at(
            "/api/endpoints", {"name": name, "project": "shop", "type": "kubernetes", "url": url, "insecure": True}
        )
        for name, url in (("dev-cluster", DEV_URL), ("prod-cluster", PROD_URL))
    ]


def pipeline_names(api: ServedApp) -> list[str]:
    return [item["name"] for item in api.http.get("/api/pipelines").json()]


def rollway(api: ServedApp, *args: str) -> Result:
    """`rollway --url <api> ARGS` with the test token in the environment."""
    runner = CliRunner()
    return runner.invoke(cli, ["--url", api.url, *args], env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None})


# -- process


def test_process_answers_what_a_yaml_holds(api: ServedApp) -> None:
    # When the application's YAML is processed
    answer = api.http.post("/api/templates/cd/process", json={"kubernetesYaml": APP})

    # Then its namespaces, services (with ports and the deployments they select), deployments and secrets are named
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["namespaces"] == [{"name": "shop", "defined": True}]
    assert [(item["name"], item["namespace"], item["deployments"]) for item in found["services"]] == [
        ("web", "shop", ["web"])
    ]
    assert found["services"][0]["ports"] == [{"name": None, "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert [(item["name"], item["replicas"]) for item in found["deployments"]] == [("web", 2)]
    assert found["secrets"] == [{"name": "regcred", "namespace": "shop", "type": "kubernetes.io/dockerconfigjson"}]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kubernetesYaml": "kind: [unclosed"}, "is not valid YAML"),
        ({}, "is required"),
        ({"kubernetesYaml": "- a\n- b"}, "must be a Kubernetes object"),
    ],
)
def test_process_refuses_a_yaml_it_cannot_read(api: ServedApp, body: Doc, reason: str) -> None:
    # When a YAML that cannot be read is processed, Then the answer is 400 with the reason
    answer = api.http.post("/api/templates/cd/process", json=body)
    assert answer.status_code == 400, answer.text
    assert any(reason in item["message"] for item in answer.json()["error"]["details"]), answer.text


# -- generate


@pytest.mark.parametrize("model", ["rolling-upgrade", "blue-green", "canary"])
def test_generating_creates_the_pipeline_disabled_and_its_rollbacks_enabled(
    api: ServedApp, endpoints: list[Doc], model: str
) -> None:
    # When the template is generated
    created = api.create_at("/api/templates/cd", request_body(deploymentModel=model))

    # Then the answer names the pipeline and its two rollback pipelines
    assert created["pipeline"]["name"] == NAME
    assert [item["name"] for item in created["rollbackPipelines"]] == ROLLBACKS
    # And each can be read: the pipeline disabled, the rollbacks enabled, all in project shop
    main = api.http.get(f"/api/pipelines/{created['pipeline']['id']}").json()
    assert (main["name"], main["project"], main["enabled"]) == (NAME, "shop", False)
    for item, name in zip(created["rollbackPipelines"], ROLLBACKS, strict=True):
        rollback = api.http.get(f"/api/pipelines/{item['id']}").json()
        assert (rollback["name"], rollback["project"], rollback["enabled"]) == (name, "shop", True)
    # And each stage is linked to its environment's rollback, and checks health through its own cluster
    assert main["stages"]["Development"]["rollback"]["pipeline"] == ROLLBACKS[0]
    assert main["stages"]["Production"]["rollback"]["pipeline"] == ROLLBACKS[1]
    polls = [task for task in main["stages"]["Production"]["tasks"].values() if task["type"] == "POLL"]
    assert polls and all(task["endpoints"] == {"kubernetesServer": "prod-cluster"} for task in polls)
    assert all(task["input"]["url"].startswith("/api/v1/namespaces/shop/services/web") for task in polls)
    assert sorted(pipeline_names(api)) == sorted([NAME, *ROLLBACKS])


def test_the_seed_scenarios_pipeline_once_enabled_takes_an_image_and_starts(
    api: ServedApp, endpoints: list[Doc]
) -> None:
    # Given the dev and prod clusters really serving (a release starts only if its rollback's clusters answer)
    with KubeSim() as dev, KubeSim() as prod:
        for endpoint, sim in zip(endpoints, (dev, prod), strict=True):
            assert api.http.patch(f"/api/endpoints/{endpoint['id']}", json={"url": sim.url}).status_code == 200
        # ... and the seed scenario's pipeline, reviewed and enabled
        created = api.create_at("/api/templates/cd", request_body())
        pipeline_id = created["pipeline"]["id"]
        main = api.http.get(f"/api/pipelines/{pipeline_id}").json()
        assert {"Create Service", "Create Secret", "Create Deployment", "Verify Deployment"} <= set(
            main["stages"]["Development"]["tasks"]
        )
        assert api.http.patch(f"/api/pipelines/{pipeline_id}", json={"enabled": True}).status_code == 200

        # When it is run without an image, Then the image is asked for
        missing = api.http.post(f"/api/pipelines/{pipeline_id}/executions", json={"input": {}})
        assert missing.status_code == 400 and "input.image" in missing.text

        # When it is run with one, Then an execution starts (no worker runs it here)
        started = api.http.post(
            f"/api/pipelines/{pipeline_id}/executions", json={"input": {"image": "nginx", "tag": "1.26"}}
        )
        assert started.status_code == 202, started.text


def test_generating_without_rollback_creates_the_pipeline_alone(api: ServedApp, endpoints: list[Doc]) -> None:
    # When the template is generated with rollback off
    created = api.create_at("/api/templates/cd", request_body(rollback=False))

    # Then only the pipeline is created, with no rollback link
    assert created["rollbackPipelines"] == []
    assert pipeline_names(api) == [NAME]
    main = api.http.get(f"/api/pipelines/{created['pipeline']['id']}").json()
    assert "rollback" not in main["stages"]["Development"]


@pytest.mark.parametrize(
    ("changes", "path", "reason"),
    [
        ({"kubernetesYaml": APP.partition("---\napiVersion: apps/v1")[0]}, "kubernetesYaml", "holds no Deployment"),
        ({"service": "api"}, "service", "'api' is not a Service of the YAML"),
        (
            {"environments": {"dev": {"endpoint": "dev-cluster"}, "prod": {"endpoint": "nowhere"}}},
            "environments.prod.endpoint",
            "endpoint 'nowhere' does not exist in project 'shop'",
        ),
        ({"project": "other"}, "environments.dev.endpoint", "does not exist in project 'other'"),
        ({"deploymentModel": "big-bang"}, "deploymentModel", "must be one of"),
        ({"kubernetesYaml": "kind: [unclosed"}, "kubernetesYaml", "is not valid YAML"),
        ({"healthCheckUrl": None}, "healthCheckUrl", "is required"),
    ],
)
def test_an_invalid_request_is_400_with_its_reason_and_creates_nothing(
    api: ServedApp, endpoints: list[Doc], changes: Doc, path: str, reason: str
) -> None:
    # When an invalid template request is sent
    answer = api.http.post("/api/templates/cd", json=request_body(**changes))

    # Then it is refused with the reason, at the field it is about
    assert answer.status_code == 400, answer.text
    details = answer.json()["error"]["details"]
    assert any(item["path"] == path and reason in item["message"] for item in details), details
    # And no pipeline is left behind
    assert pipeline_names(api) == []


def test_a_body_that_is_not_a_json_object_is_400(api: ServedApp) -> None:
    # When the body is not an object, Then the answer is 400 and nothing is created
    answer = api.http.post("/api/templates/cd", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"
    assert pipeline_names(api) == []


def test_generating_a_name_taken_is_409_and_creates_nothing_more(api: ServedApp, endpoints: list[Doc]) -> None:
    # Given the template generated once
    first = api.create_at("/api/templates/cd", request_body())

    # When it is generated again under the same name, with another model
    again = api.http.post("/api/templates/cd", json=request_body(deploymentModel="canary"))

    # Then it is refused as a conflict naming the pipelines, and the first three are all there is, unchanged
    assert again.status_code == 409, again.text
    assert NAME in again.json()["error"]["message"]
    assert sorted(pipeline_names(api)) == sorted([NAME, *ROLLBACKS])
    main = api.http.get(f"/api/pipelines/{first['pipeline']['id']}").json()
    assert "rolling-upgrade" in main["tags"]


def test_a_rollback_name_taken_is_409_and_creates_nothing(api: ServedApp, endpoints: list[Doc]) -> None:
    # Given a pipeline that already holds the name the Prod rollback would take
    api.create(
        {
            "name": ROLLBACKS[1],
            "project": "shop",
            "stageOrder": ["Check"],
            "stages": {
                "Check": {
                    "taskOrder": ["Gate"],
                    "tasks": {"Gate": {"type": "Condition", "input": {"condition": "1 == 1"}}},
                }
            },
        }
    )

    # When the template is generated
    answer = api.http.post("/api/templates/cd", json=request_body())

    # Then it is a conflict naming that pipeline, and neither the pipeline nor the Dev rollback was created
    assert answer.status_code == 409, answer.text
    assert ROLLBACKS[1] in answer.json()["error"]["message"]
    assert pipeline_names(api) == [ROLLBACKS[1]]


# -- the command line


def test_the_cli_generates_the_pipelines_from_a_yaml_file(api: ServedApp, endpoints: list[Doc], tmp_path: Path) -> None:
    # Given the application's YAML in a file
    path = tmp_path / "app.yaml"
    path.write_text(APP)

    # When `rollway template cd` is run
    result = rollway(
        api,
        *("template", "cd", "--project", "shop", "--name", NAME, "-f", str(path), "--service", "web"),
        *("--dev-endpoint", "dev-cluster", "--prod-endpoint", "prod-cluster", "--model", "blue-green"),
        *("--health-check-url", "/healthz"),
    )

    # Then it prints the three pipelines created, the main one to be reviewed before it is enabled
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"pipeline shop/{NAME} created (") and lines[0].endswith(
        "disabled: review it, then enable it"
    )
    assert [line.split()[1] for line in lines[1:]] == [f"shop/{name}" for name in ROLLBACKS]
    assert sorted(pipeline_names(api)) == sorted([NAME, *ROLLBACKS])


def test_the_cli_without_rollback_and_with_a_bad_service_says_why_in_one_line_per_problem(
    api: ServedApp, endpoints: list[Doc], tmp_path: Path
) -> None:
    # Given the application's YAML in a file
    path = tmp_path / "app.yaml"
    path.write_text(APP)
    args = ("template", "cd", "--project", "shop", "--name", NAME, "-f", str(path), "--dev-endpoint", "dev-cluster")
    args += ("--prod-endpoint", "prod-cluster", "--health-check-url", "/healthz", "--no-rollback")

    # When it names a Service the YAML does not have
    failed = rollway(api, *args, "--service", "api")

    # Then it exits 1 with the API's reason, and nothing is created
    assert failed.exit_code == 1
    assert "service: 'api' is not a Service of the YAML" in failed.output
    assert pipeline_names(api) == []

    # When it names the right one, Then the pipeline alone is created
    done = rollway(api, *args, "--service", "web")
    assert done.exit_code == 0, done.output
    assert pipeline_names(api) == [NAME]
