"""Health checks of the smart CD template: a health path polled through each cluster's service proxy WITH that
endpoint's credentials (which never enter the pipeline or a task's record), an absolute URL polled as given, and
an environment's own health-check URL.

The executor tests run one POLL or REST attempt against real local servers; the end-to-end tests release through
the HTTP API with a real `rollway worker` process on token-protected kubesim clusters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from k8s_support import self_signed, tls_front
from kubernetes import client as k8s
from pytest_httpserver import HTTPServer

from kubesim import KubeSim
from orchestrator.cdtemplate import generate
from orchestrator.cdtemplate.request import read_request
from orchestrator.document import load_pipeline
from orchestrator.endpoints import Endpoint
from orchestrator.errors import BadRequest, NotFound
from workers.executors.base import Failed, Succeeded, TaskCall
from workers.executors.poll import PollExecutor
from workers.executors.rest import RestExecutor
from workers.http import HttpClient

from rollway_testing import TERMINAL, ServedApp, template_request, wait_until

Doc = dict[str, Any]
TOKEN = "health-check-token-5f1c"
NAME = "Shop-Release"
PROXY_PATH = "/api/v1/namespaces/shop/services/web:http/proxy/healthz"
HEALTHY = {"success": "${responseCode} == 200"}

APP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.24", ports: [{containerPort: 8080}]}]
"""


@pytest.fixture
def http() -> Iterator[HttpClient]:
    client = HttpClient(timeout=2)
    yield client
    client.close()


def endpoint_at(url: str, token: str | None = TOKEN) -> Endpoint:
    return Endpoint(id="ep-1", name="dev-cluster", project="shop", type="kubernetes", url=url, token=token)


def lookup_of(*endpoints: Endpoint) -> Any:
    def find(endpoint_id: str) -> Endpoint:
        for endpoint in endpoints:
            if endpoint.id == endpoint_id:
                return endpoint
        raise NotFound(f"there is no endpoint with id '{endpoint_id}'")

    return find


def poll_call(url: str, endpoints: dict[str, str] | None = None) -> TaskCall:
    task_input = {"url": url, "pollCount": 1, "exitCriteria": HEALTHY}
    return TaskCall("POLL", task_input, endpoints=endpoints or {})


# -- the executors -------------------------------------------------------------------------------------------------


def test_a_poll_of_a_path_goes_through_its_endpoint_with_the_endpoints_token(http: HttpClient, web: HTTPServer) -> None:
    # Given a server that answers the health path only to the endpoint's bearer token
    web.expect_request(PROXY_PATH, headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_json({"ok": True})
    executor = PollExecutor(http, lookup_of(endpoint_at(web.url_for("/"))))
    call = poll_call(PROXY_PATH, {"kubernetesServer": "ep-1"})

    # When the POLL of the path runs
    outcome = executor.execute(call)

    # Then it reached the endpoint's URL with the token, and passed
    assert isinstance(outcome, Succeeded), outcome
    assert outcome.output["responseCode"] == 200
    # And the token is in neither what the task was given nor what it recorded
    assert TOKEN not in json.dumps(dict(call.input)) + json.dumps(outcome.output)


def test_a_poll_of_a_path_trusts_the_endpoints_ca(http: HttpClient, web: HTTPServer, tmp_path: Path) -> None:
    # Given a cluster behind HTTPS with a self-signed certificate, and its endpoint holding that CA
    web.expect_request(PROXY_PATH, headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_json({"ok": True})
    cert, key, ca_data = self_signed(tmp_path)
    with tls_front(web.url_for("/"), cert, key) as url:
        trusting = replace(endpoint_at(url), ca_data=ca_data)
        untrusting = replace(trusting, id="ep-2", ca_data=None)
        executor = PollExecutor(http, lookup_of(trusting, untrusting))

        # When the POLL runs through each
        trusted = executor.execute(poll_call(PROXY_PATH, {"kubernetesServer": "ep-1"}))
        refused = executor.execute(poll_call(PROXY_PATH, {"kubernetesServer": "ep-2"}))

    # Then the endpoint with the CA got its answer; without the CA the certificate is not trusted
    assert isinstance(trusted, Succeeded), trusted
    assert isinstance(refused, Failed) and "CERTIFICATE_VERIFY_FAILED" in refused.message


def test_a_poll_of_an_absolute_url_sends_no_endpoint_credentials(http: HttpClient, web: HTTPServer) -> None:
    # Given a task that names an endpoint but polls an absolute URL
    web.expect_request("/healthz").respond_with_json({"ok": True})
    executor = PollExecutor(http, lookup_of(endpoint_at("http://127.0.0.1:1")))

    # When it runs
    outcome = executor.execute(poll_call(web.url_for("/healthz"), {"kubernetesServer": "ep-1"}))

    # Then the URL was polled as given, without the endpoint's token
    assert isinstance(outcome, Succeeded), outcome
    assert [request.headers.get("Authorization") for request, _ in web.log] == [None]


def test_a_poll_of_a_path_without_a_usable_endpoint_fails_saying_why(http: HttpClient) -> None:
    # Given a path with no endpoint named, and one naming an endpoint that is gone
    executor = PollExecutor(http, lookup_of())

    # When each runs, Then it fails saying what is missing, without polling again
    unnamed = executor.execute(poll_call(PROXY_PATH))
    gone = executor.execute(poll_call(PROXY_PATH, {"kubernetesServer": "ep-gone"}))
    assert isinstance(unnamed, Failed) and "needs the endpoint it is on" in unnamed.message
    assert isinstance(gone, Failed) and "cannot be used" in gone.message


def test_a_rest_call_of_a_path_goes_through_its_endpoint_with_its_token(http: HttpClient, web: HTTPServer) -> None:
    # Given a server that takes the call only with the endpoint's bearer token
    web.expect_request("/api/v1/namespaces", headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_json({})
    executor = RestExecutor(http, lookup_of(endpoint_at(web.url_for("/"))))

    # When a REST task GETs the path
    call = TaskCall("REST", {"url": "/api/v1/namespaces"}, endpoints={"kubernetesServer": "ep-1"})
    outcome = executor.execute(call)

    # Then it succeeded, and recorded nothing of the token
    assert isinstance(outcome, Succeeded), outcome
    assert TOKEN not in json.dumps(outcome.output)


def test_a_pipeline_whose_poll_url_is_a_path_must_name_the_endpoint_it_is_on() -> None:
    # Given a POLL of a path without an endpoint
    document = {
        "kind": "PIPELINE",
        "name": "Check",
        "project": "shop",
        "stageOrder": ["Check"],
        "stages": {
            "Check": {
                "taskOrder": ["Health"],
                "tasks": {"Health": {"type": "POLL", "input": {"url": "/healthz", "exitCriteria": HEALTHY}}},
            }
        },
    }

    # When it is read, Then the problem names the url and says what is needed
    with pytest.raises(BadRequest) as raised:
        load_pipeline(document, None)
    found = {problem.path: problem.message for problem in raised.value.details}
    assert "endpoints: {kubernetesServer: NAME}" in found["stages.Check.tasks.Health.input.url"]


# -- the template --------------------------------------------------------------------------------------------------

ENDPOINTS = {"dev-cluster": "https://dev.example:6443", "prod-cluster": "https://prod.example:6443"}


def polls_of(body: Doc) -> dict[str, list[Doc]]:
    """The POLL tasks of each stage of the main pipeline the template generates."""
    main = generate(read_request(body, lambda _project, name: ENDPOINTS.get(name))).main
    return {
        stage: [task for task in main["stages"][stage]["tasks"].values() if task["type"] == "POLL"]
        for stage in ("Development", "Production")
    }


def test_an_absolute_health_check_url_is_polled_as_given_without_an_endpoint() -> None:
    # When the template is given an absolute health-check URL
    found = polls_of(template_request(APP, healthCheckUrl="https://status.shop.example/healthz?deep=1"))

    # Then every health check polls it as given, naming no endpoint (no credentials go to it)
    for tasks in found.values():
        assert tasks
        assert all(task["input"]["url"] == "https://status.shop.example/healthz?deep=1" for task in tasks)
        assert all("endpoints" not in task for task in tasks)


def test_an_environment_may_name_its_own_health_check_url() -> None:
    # When prod names its own absolute health-check URL and dev uses the request's path
    environments = {
        "dev": {"endpoint": "dev-cluster"},
        "prod": {"endpoint": "prod-cluster", "healthCheckUrl": "http://prod-status.example/ready"},
    }
    found = polls_of(template_request(APP, environments=environments))

    # Then dev polls through its cluster's proxy with its endpoint, prod polls its own URL
    assert {(task["input"]["url"], task["endpoints"]["kubernetesServer"]) for task in found["Development"]} == {
        (PROXY_PATH, "dev-cluster")
    }
    assert {task["input"]["url"] for task in found["Production"]} == {"http://prod-status.example/ready"}


def test_the_request_needs_no_health_check_url_of_its_own_when_each_environment_has_one() -> None:
    # Given a request whose environments both name a health-check URL, and one with a bad one in dev
    own = {"dev": {"endpoint": "dev-cluster", "healthCheckUrl": "/ready"}, "prod": {"endpoint": "prod-cluster"}}
    own["prod"]["healthCheckUrl"] = "/ready"
    body = template_request(APP, environments=own)
    del body["healthCheckUrl"]
    bad = template_request(APP, environments={**own, "dev": {"endpoint": "dev-cluster", "healthCheckUrl": "ready"}})

    # When each is read, Then the first is accepted and the second names the environment's field
    assert all(tasks for tasks in polls_of(body).values())
    with pytest.raises(BadRequest) as raised:
        polls_of(bad)
    assert [problem.path for problem in raised.value.details] == ["environments.dev.healthCheckUrl"]


# -- end to end: the API, a real worker, token-protected clusters ------------------------------------------------


@pytest.fixture
def clusters() -> Iterator[dict[str, KubeSim]]:
    """Two clusters that answer only the bearer token TOKEN, the service proxy included."""
    with KubeSim(ready_delay=0.1, token=TOKEN) as dev, KubeSim(ready_delay=0.1, token=TOKEN) as prod:
        yield {"dev": dev, "prod": prod}


def generate_at(api: ServedApp, clusters: dict[str, KubeSim], **changes: Any) -> Doc:
    """Endpoints (with the token) for both clusters, the template's pipelines, and the release pipeline enabled."""
    for environment, sim in clusters.items():
        endpoint = {"name": f"{environment}-cluster", "project": "shop", "url": sim.url, "token": TOKEN}
        api.create_at("/api/endpoints", endpoint)
    body = template_request(APP, pipelineName=NAME, healthCheckIntervalSeconds=0.3, **changes)
    generated = api.create_at("/api/templates/cd", body)
    enabled = api.http.patch(f"/api/pipelines/{generated['pipeline']['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    pipeline: Doc = enabled.json()
    return pipeline


def release(api: ServedApp, pipeline: Doc, tag: str) -> Doc:
    answer = api.http.post(
        f"/api/pipelines/{pipeline['id']}/executions", json={"input": {"image": "nginx", "tag": tag}}
    )
    assert answer.status_code == 202, answer.text
    execution_id = answer.json()["executionId"]

    def ended() -> Doc | None:
        found: Doc = api.http.get(f"/api/executions/{execution_id}").json()
        return found if found["status"] in TERMINAL else None

    done: Doc = wait_until(ended, timeout=110, interval=0.25, what=f"the release of tag {tag} to end")
    return done


def images(sim: KubeSim) -> set[str]:
    """The images of the Deployment web in namespace shop (empty when there is none)."""
    configuration = k8s.Configuration(host=sim.url)
    configuration.api_key, configuration.api_key_prefix = {"BearerToken": TOKEN}, {"BearerToken": "Bearer"}
    with k8s.ApiClient(configuration) as api_client:
        try:
            deployment = k8s.AppsV1Api(api_client).read_namespaced_deployment("web", "shop")
        except k8s.ApiException as error:
            if error.status == 404:
                return set()
            raise
    return {container.image for container in deployment.spec.template.spec.containers}


def health_tasks(execution: Doc) -> list[Doc]:
    return [task for stage in execution["stages"] for task in stage["tasks"] if task["type"] == "POLL"]


def test_a_release_health_checks_through_token_protected_clusters_and_completes(
    api: ServedApp, worker: Any, clusters: dict[str, KubeSim]
) -> None:
    # Given the template's pipelines on two clusters that answer only their endpoint's token
    pipeline = generate_at(api, clusters)

    # When a release runs
    done = release(api, pipeline, "1.25")

    # Then it completed: each health check reached its cluster's service proxy with the token and got a 200
    assert done["status"] == "COMPLETED", done
    checks = health_tasks(done)
    assert checks and all(task["output"]["responseCode"] == 200 for task in checks)
    assert images(clusters["dev"]) == images(clusters["prod"]) == {"nginx:1.25"}
    # And the token is nowhere in what the execution recorded
    assert TOKEN not in json.dumps(done)


def test_an_absolute_health_check_url_is_accepted_and_polled(
    api: ServedApp, worker: Any, clusters: dict[str, KubeSim], web: HTTPServer
) -> None:
    # Given a status server answering 200, and the template told to poll it
    web.expect_request("/status").respond_with_json({"status": "UP"})
    pipeline = generate_at(api, clusters, healthCheckUrl=web.url_for("/status"))

    # When a release runs
    done = release(api, pipeline, "1.25")

    # Then it completed, having polled the status server, which was sent no cluster token
    assert done["status"] == "COMPLETED", done
    assert web.log and all(request.headers.get("Authorization") is None for request, _ in web.log)
    assert {task["input"]["url"] for task in health_tasks(done)} == {web.url_for("/status")}


def test_a_health_check_failing_only_in_prod_rolls_back_prod_only(
    api: ServedApp, worker: Any, clusters: dict[str, KubeSim], web: HTTPServer
) -> None:
    # Given prod's own health-check URL on a server that answers 500, and dev checking through its cluster
    web.expect_request("/prod-health").respond_with_json({"status": "DOWN"}, status=500)
    environments = {
        "dev": {"endpoint": "dev-cluster"},
        "prod": {"endpoint": "prod-cluster", "healthCheckUrl": web.url_for("/prod-health")},
    }
    pipeline = generate_at(api, clusters, environments=environments, healthCheckPollCount=3)

    # When a release runs
    done = release(api, pipeline, "1.26")

    # Then Development passed, Production failed its health check and was rolled back
    assert done["status"] == "ROLLBACK_COMPLETED", done
    assert [stage["status"] for stage in done["stages"]] == ["COMPLETED", "FAILED"]
    rollback: Doc = api.http.get(f"/api/executions/{done['rollbackExecutionId']}").json()
    assert (rollback["pipeline"], rollback["status"]) == (f"{NAME}_Prod_Rollback", "COMPLETED")
    # And dev stays on the new image, while prod's first release was removed
    assert images(clusters["dev"]) == {"nginx:1.26"}
    assert images(clusters["prod"]) == set()
    assert len(web.log) == 3
