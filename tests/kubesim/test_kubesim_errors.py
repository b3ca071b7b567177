"""Failures answer real ``Status`` objects, which the official client raises as ``ApiException``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from kubesim import KubeSim

from kubesim_support import deployment, http


def status_of(error: ApiException) -> dict[str, Any]:
    """The decoded ``Status`` body of a failed call."""
    body: dict[str, Any] = json.loads(error.body)
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert body["code"] == error.status
    return body


def test_missing_object_is_not_found(apps: AppsV1Api, namespace: str) -> None:
    # Given no deployment named ghost
    # When it is read
    with pytest.raises(ApiException) as raised:
        apps.read_namespaced_deployment("ghost", namespace)

    # Then the answer is a 404 NotFound Status naming it
    body = status_of(raised.value)
    assert raised.value.status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'deployments.apps "ghost" not found'
    assert body["details"] == {"name": "ghost", "group": "apps", "kind": "deployments"}


def test_duplicate_create_already_exists(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})

    # When one with the same name is created
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})

    # Then the answer is 409 AlreadyExists
    assert raised.value.status == 409
    assert status_of(raised.value)["reason"] == "AlreadyExists"


def test_stale_resource_version_conflicts(core: CoreV1Api, namespace: str) -> None:
    # Given two readers of the same configmap
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"n": "0"}})
    first = core.read_namespaced_config_map("settings", namespace)
    second = core.read_namespaced_config_map("settings", namespace)

    # When both write back, the second with the version it read
    first.data["n"] = "1"
    core.replace_namespaced_config_map("settings", namespace, first)
    second.data["n"] = "2"
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map("settings", namespace, second)

    # Then the second write is a 409 Conflict and the first one stands
    assert raised.value.status == 409
    body = status_of(raised.value)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("settings", namespace).data == {"n": "1"}


def test_stale_resource_version_in_a_patch_conflicts(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap changed after it was read
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})
    core.patch_namespaced_config_map("settings", namespace, {"data": {"a": "1"}})

    # When a patch carries the old resourceVersion as a precondition
    patch = {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"a": "2"}}
    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_config_map("settings", namespace, patch)

    # Then it is refused
    assert status_of(raised.value)["reason"] == "Conflict"


def test_selector_not_matching_template_is_invalid(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment whose selector does not select its own pods
    body = deployment("web", "nginx:1.25")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}

    # When it is created
    with pytest.raises(ApiException) as raised:
        apps.create_namespaced_deployment(namespace, body)

    # Then the answer is 422 Invalid with a cause per bad field
    assert raised.value.status == 422
    body = status_of(raised.value)
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Deployment"
    assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.template.metadata.labels"]
    assert "`selector` does not match template `labels`" in body["message"]


def test_missing_fields_and_bad_names_are_invalid(core: CoreV1Api, namespace: str) -> None:
    # Given a pod without an image and with an upper-case name
    body = {"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}}

    # When it is created
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod(namespace, body)

    # Then both problems are reported
    fields = {cause["field"] for cause in status_of(raised.value)["details"]["causes"]}
    assert fields == {"metadata.name", "spec.containers[0].image"}


def test_selector_is_immutable(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment
    apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25"))

    # When its selector is patched
    patch = {
        "spec": {
            "selector": {"matchLabels": {"app": "web", "tier": "x"}},
            "template": {"metadata": {"labels": {"tier": "x"}}},
        }
    }
    with pytest.raises(ApiException) as raised:
        apps.patch_namespaced_deployment("web", namespace, patch)

    # Then it is refused as in apps/v1
    assert raised.value.status == 422
    assert "field is immutable" in status_of(raised.value)["message"]


def test_name_mismatch_is_bad_request(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})

    # When it is replaced with a body naming another object
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map("settings", namespace, {"metadata": {"name": "other"}})

    # Then the answer is 400 BadRequest
    assert raised.value.status == 400
    assert status_of(raised.value)["reason"] == "BadRequest"


def test_missing_namespace_is_not_found(core: CoreV1Api) -> None:
    # Given no namespace named nowhere
    # When a configmap is created in it
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "settings"}})

    # Then the namespace is reported missing
    assert status_of(raised.value)["message"] == 'namespaces "nowhere" not found'


@pytest.fixture
def guarded() -> Iterator[KubeSim]:
    """An emulator that requires one bearer token."""
    with KubeSim(ready_delay=0.05, token="s3cret") as running:
        yield running


def test_required_token_rejects_other_clients(guarded: KubeSim) -> None:
    # Given a client with the wrong token and one with the right token
    wrong = ApiClient(Configuration(host=guarded.url, api_key={"authorization": "Bearer nope"}))
    right = ApiClient(Configuration(host=guarded.url, api_key={"authorization": "Bearer s3cret"}))

    # When both list namespaces
    with pytest.raises(ApiException) as raised:
        CoreV1Api(wrong).list_namespace()
    names = [ns.metadata.name for ns in CoreV1Api(right).list_namespace().items]

    # Then only the right one gets through; the other gets a 401 Status
    assert raised.value.status == 401
    assert status_of(raised.value)["reason"] == "Unauthorized"
    assert "default" in names
    wrong.close()
    right.close()


def test_injected_faults_fail_the_next_requests(sim: KubeSim, core: CoreV1Api) -> None:
    # Given two injected 500s, armed through the admin route
    code, armed = http("POST", f"{sim.url}/kubesim/faults", {"status": 500, "count": 2})
    assert (code, armed["count"]) == (200, 2)

    # When three requests are made
    outcomes = []
    for _ in range(3):
        try:
            core.list_namespace()
            outcomes.append(200)
        except ApiException as error:
            outcomes.append(error.status)

    # Then the first two fail and the third succeeds
    assert outcomes == [500, 500, 200]


def test_injected_throttling_carries_retry_after(sim: KubeSim, core: CoreV1Api, namespace: str) -> None:
    # Given one injected 429 with a Retry-After header
    sim.inject_faults(429, 1, retry_after=1)

    # When a write is made (the client only retries reads by itself)
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})

    # Then it is throttled with the header and a TooManyRequests Status
    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "1"
    assert status_of(raised.value)["reason"] == "TooManyRequests"


def test_injected_retry_after_can_be_an_http_date(sim: KubeSim, core: CoreV1Api, namespace: str) -> None:
    # Given one injected 503 whose Retry-After is an HTTP-date, armed through the admin route
    when = "Wed, 21 Oct 2037 07:28:00 GMT"
    code, armed = http("POST", f"{sim.url}/kubesim/faults", {"status": 503, "count": 1, "retryAfter": when})
    assert (code, armed["retryAfter"]) == (200, when)

    # When a write is made
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})

    # Then the answer carries the date as it was given
    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"] == when


def test_throttled_read_is_retried_by_the_client(sim: KubeSim, core: CoreV1Api) -> None:
    # Given one injected 429 with a Retry-After header
    sim.inject_faults(429, 1, retry_after=1)

    # When a read is made
    names = [ns.metadata.name for ns in core.list_namespace().items]

    # Then the official client honoured Retry-After and the retry went through
    assert "default" in names
    assert sim.faults.snapshot()["count"] == 0


def test_unknown_paths_are_not_found(sim: KubeSim) -> None:
    # Given the emulator
    # When unknown resources and groups are requested
    missing_resource = http("GET", f"{sim.url}/api/v1/namespaces/default/widgets")
    missing_group = http("GET", f"{sim.url}/apis/autoscaling/v2/horizontalpodautoscalers")

    # Then both are 404 Status objects
    assert missing_resource[0] == missing_group[0] == 404
    assert missing_resource[1]["reason"] == "NotFound"
