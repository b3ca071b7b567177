"""The three patch kinds: strategic merge with the built-in merge keys and directives, JSON merge patch and
JSON patch, as pure functions and through the official client."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from kubesim.patch import json_patch, merge_patch
from kubesim.status import BadRequest, Invalid
from kubesim.strategic_merge import strategic_merge

from kubesim_support import deployment


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"spec": {"containers": list(containers), **extra}}


def test_containers_merge_by_name_and_ports_by_container_port() -> None:
    # Given a pod spec with two containers
    original = pod_spec(
        {"name": "app", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
        {"name": "sidecar", "image": "s:1"},
    )

    # When a patch names one container and adds a port
    patch = pod_spec({"name": "app", "image": "a:2", "ports": [{"containerPort": 9090, "name": "metrics"}]})
    merged = strategic_merge(original, patch, "Pod")

    # Then only that container changed, and its ports were merged, not replaced
    app, sidecar = merged["spec"]["containers"]
    assert app["image"] == "a:2"
    assert [port["containerPort"] for port in app["ports"]] == [80, 9090]
    assert sidecar == {"name": "sidecar", "image": "s:1"}


def test_env_volumes_and_mounts_merge_by_their_keys() -> None:
    # Given a container with env, mounts and volumes
    original = pod_spec(
        {
            "name": "app",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumeMounts": [{"mountPath": "/data", "name": "data"}],
        },
        volumes=[{"name": "data", "emptyDir": {}}],
    )

    # When a patch changes one variable, adds a mount and a volume
    patch = pod_spec(
        {"name": "app", "env": [{"name": "B", "value": "3"}], "volumeMounts": [{"mountPath": "/cache", "name": "c"}]},
        volumes=[{"name": "c", "emptyDir": {}}],
    )
    merged = strategic_merge(original, patch, "Pod")

    # Then each list merged element-wise by its key
    container = merged["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == ["/data", "/cache"]
    assert [volume["name"] for volume in merged["spec"]["volumes"]] == ["data", "c"]


def test_service_ports_merge_by_port() -> None:
    # Given a service with two ports
    original = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}

    # When a patch changes the target of port 443
    merged = strategic_merge(original, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}, "Service")

    # Then the service's merge key (port, not containerPort) applied
    assert merged["spec"]["ports"][1] == {"port": 443, "name": "https", "targetPort": 8443}


def test_patch_directives() -> None:
    # Given a pod spec with env, a container list, labels and a primitive merge list
    original = {
        "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
        "spec": {"containers": [{"name": "app", "env": [{"name": "A"}, {"name": "B"}], "args": ["--old"]}]},
    }

    # When directives delete an element, replace a map, order a list and extend a primitive list
    patch = {
        "metadata": {"labels": {"$patch": "replace", "c": "3"}, "finalizers": ["y"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}], "args": ["--new"]}],
        },
    }
    merged = strategic_merge(original, patch, "Pod")

    # Then each directive took effect and lists without a merge key were replaced
    assert merged["metadata"]["labels"] == {"c": "3"}
    assert merged["metadata"]["finalizers"] == ["x", "y"]
    container = merged["spec"]["containers"][0]
    assert container["env"] == [{"name": "B"}]
    assert container["args"] == ["--new"]


def test_retain_keys_and_null_deletion() -> None:
    # Given a rolling-update strategy, as kubectl apply sees it when switching to Recreate
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "paused": True}}

    # When the patch keeps only the type and nulls a field
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "paused": None}}
    merged = strategic_merge(original, patch, "Deployment")

    # Then the dropped keys are gone
    assert merged == {"spec": {"strategy": {"type": "Recreate"}}}


def test_list_replace_directive() -> None:
    # Given two containers
    original = pod_spec({"name": "a", "image": "a"}, {"name": "b", "image": "b"})

    # When the list is replaced wholesale
    merged = strategic_merge(original, pod_spec({"$patch": "replace"}, {"name": "c", "image": "c"}), "Pod")

    # Then only the patch's elements remain
    assert merged["spec"]["containers"] == [{"name": "c", "image": "c"}]


def test_merge_patch_replaces_lists_and_deletes_nulls() -> None:
    # Given an object with a list and nested keys
    original = {"a": {"b": 1, "c": 2}, "list": [1, 2]}

    # When an RFC 7386 patch is applied
    merged = merge_patch(original, {"a": {"b": None, "d": 3}, "list": [3]})

    # Then maps merged, null deleted and the list was replaced
    assert merged == {"a": {"c": 2, "d": 3}, "list": [3]}


def test_json_patch_operations() -> None:
    # Given a document
    document = {"spec": {"containers": [{"name": "app", "image": "a:1"}]}, "metadata": {"labels": {"x/y": "1"}}}

    # When every kind of operation is applied
    operations = [
        {"op": "test", "path": "/spec/containers/0/name", "value": "app"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "a:2"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "side", "image": "s"}},
        {"op": "copy", "from": "/spec/containers/0/image", "path": "/metadata/image"},
        {"op": "move", "from": "/metadata/image", "path": "/metadata/moved"},
        {"op": "remove", "path": "/metadata/labels/x~1y"},
    ]
    patched = json_patch(document, operations)

    # Then the result follows RFC 6902 and the input is untouched
    assert [c["image"] for c in patched["spec"]["containers"]] == ["a:2", "s"]
    assert patched["metadata"] == {"labels": {}, "moved": "a:2"}
    assert document["spec"]["containers"][0]["image"] == "a:1"


def test_json_patch_failures() -> None:
    # Given a document
    document = {"a": 1}

    # When a test fails, a path is missing or the patch is not a list
    # Then the errors are Invalid (422) or BadRequest (400), as on the API server
    with pytest.raises(Invalid):
        json_patch(document, [{"op": "test", "path": "/a", "value": 2}])
    with pytest.raises(Invalid):
        json_patch(document, [{"op": "replace", "path": "/missing", "value": 2}])
    with pytest.raises(BadRequest):
        json_patch(document, {"op": "add"})


def test_client_patches_of_each_kind(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment with one container and an env variable
    body = deployment("web", "nginx:1.25")
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "a"}]
    apps.create_namespaced_deployment(namespace, body)

    # When it is patched with a strategic merge (dict body), a merge patch and a JSON patch (list body)
    container = {"name": "app", "image": "nginx:1.26", "env": [{"name": "LEVEL", "value": "debug"}]}
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {"containers": [container]}}}})
    apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"tier": "front"}}}, _content_type="application/merge-patch+json"
    )
    patched = apps.patch_namespaced_deployment(
        "web", namespace, [{"op": "replace", "path": "/spec/replicas", "value": 2}]
    )

    # Then all three applied: containers and env merged by name, labels merged, replicas replaced
    spec = patched.spec.template.spec.containers[0]
    assert spec.image == "nginx:1.26"
    assert [(env.name, env.value) for env in spec.env] == [("MODE", "a"), ("LEVEL", "debug")]
    assert patched.metadata.labels == {"tier": "front"}
    assert patched.spec.replicas == 2


def test_client_json_patch_failure_is_unprocessable(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}})

    # When a JSON patch's test operation fails
    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_config_map("settings", namespace, [{"op": "test", "path": "/data/a", "value": "2"}])

    # Then the client sees 422
    assert raised.value.status == 422


def test_status_and_scale_subresources(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment
    apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25", replicas=1))

    # When it is scaled through the scale subresource and its status is patched
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    patched = apps.patch_namespaced_deployment_status(
        "web", namespace, {"spec": {"replicas": 9}, "status": {"replicas": 7}}
    )

    # Then the scale changed the spec, and the status write could not touch the spec
    assert scale.spec.replicas == 4
    assert scale.status.selector == "app=web"
    assert patched.spec.replicas == 4
