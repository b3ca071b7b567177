"""CRUD of every kind through the official client, with the metadata rules of a real API server."""

from __future__ import annotations

import base64

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from kubesim_support import deployment, service, wait_until


def test_configmap_crud_keeps_identity_and_bumps_resource_version(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap created through the official client
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}})

    # When it is read, replaced and listed
    read = core.read_namespaced_config_map("settings", namespace)
    read.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    listed = core.list_namespaced_config_map(namespace)

    # Then identity stays, the resourceVersion grows and the list's version covers the write
    assert replaced.metadata.uid == created.metadata.uid
    assert replaced.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.data == {"a": "1", "b": "2"}
    assert [item.metadata.name for item in listed.items] == ["settings"]
    assert int(listed.metadata.resource_version) >= int(replaced.metadata.resource_version)

    # When it is deleted
    core.delete_namespaced_config_map("settings", namespace)

    # Then it is gone
    assert core.list_namespaced_config_map(namespace).items == []


def test_secret_string_data_is_stored_as_base64_data(core: CoreV1Api, namespace: str) -> None:
    # Given a secret written with stringData, as manifests often are
    body = {"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}, "data": {"user": "YWRtaW4="}}

    # When it is created and read back
    core.create_namespaced_secret(namespace, body)
    secret = core.read_namespaced_secret("creds", namespace)

    # Then stringData was merged into data as base64 and the type defaulted
    assert secret.string_data is None
    assert base64.b64decode(secret.data["password"]) == b"hunter2"
    assert secret.data["user"] == "YWRtaW4="
    assert secret.type == "Opaque"


def test_service_gets_a_cluster_ip_that_updates_keep(core: CoreV1Api, namespace: str) -> None:
    # Given a service without a cluster IP
    created = core.create_namespaced_service(namespace, service("app", "web"))

    # When it is replaced by a body that omits the cluster IP
    body = service("app", "web", port=8080)
    core.replace_namespaced_service("app", namespace, body)
    replaced = core.read_namespaced_service("app", namespace)

    # Then an address from the service range was allocated and kept, with the API server's defaults
    assert created.spec.cluster_ip.startswith("10.")
    assert replaced.spec.cluster_ip == created.spec.cluster_ip
    assert replaced.spec.type == "ClusterIP"
    assert replaced.spec.ports[0].port == 8080
    assert replaced.spec.ports[0].protocol == "TCP"


def test_deployment_generation_counts_spec_and_annotation_changes(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment at generation 1
    created = apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25"))
    assert created.metadata.generation == 1

    # When only a label changes
    labelled = apps.patch_namespaced_deployment("web", namespace, {"metadata": {"labels": {"team": "a"}}})

    # Then the generation stays
    assert labelled.metadata.generation == 1

    # When the spec and then an annotation change
    scaled = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 5}})
    noted = apps.patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": {"note": "x"}}})

    # Then each bumps the generation, as the real deployment strategy does
    assert scaled.metadata.generation == 2
    assert noted.metadata.generation == 3


def test_deployment_defaults_are_filled_in(apps: AppsV1Api, namespace: str) -> None:
    # Given a minimal deployment
    body = deployment("web", "nginx")
    del body["spec"]["strategy"]
    del body["spec"]["replicas"]

    # When it is created
    created = apps.create_namespaced_deployment(namespace, body)

    # Then the API server's defaults are present
    spec = created.spec
    assert spec.replicas == 1
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    assert spec.template.spec.containers[0].image_pull_policy == "Always"
    assert spec.template.spec.restart_policy == "Always"


def test_namespace_deletion_terminates_then_takes_its_contents(core: CoreV1Api, namespace: str) -> None:
    # Given a namespace holding a configmap
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})

    # When the namespace is deleted
    answer = core.delete_namespace(namespace)

    # Then it answers Terminating, refuses new content, and soon neither it nor its contents remain
    assert answer["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "late"}})
    assert raised.value.status == 403
    wait_until(
        lambda: namespace not in [ns.metadata.name for ns in core.list_namespace().items], what="the namespace to go"
    )
    assert core.list_config_map_for_all_namespaces().items == []


def test_bootstrap_objects_exist(core: CoreV1Api) -> None:
    # Given a fresh emulator
    # When its namespaces, nodes and default services are listed
    namespaces = {ns.metadata.name for ns in core.list_namespace().items}
    nodes = core.list_node().items
    kubernetes = core.read_namespaced_service("kubernetes", "default")

    # Then it looks like a new cluster
    assert {"default", "kube-system", "kube-public"} <= namespaces
    assert [node.metadata.name for node in nodes] == ["kubesim-node"]
    assert kubernetes.spec.cluster_ip == "10.96.0.1"


def test_pod_created_directly_becomes_ready(core: CoreV1Api, namespace: str) -> None:
    # Given a bare pod
    body = {
        "metadata": {"name": "solo", "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }

    # When it is created
    created = core.create_namespaced_pod(namespace, body)

    # Then it starts Pending, then runs Ready on the simulated node with an address
    assert created.status.phase == "Pending"
    pod = wait_until(
        lambda: (p := core.read_namespaced_pod("solo", namespace)).status.phase == "Running" and p,
        what="pod to run",
    )
    assert pod.spec.node_name == "kubesim-node"
    assert pod.status.pod_ip.startswith("10.244.")
    assert pod.status.container_statuses[0].ready is True
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"


def test_generate_name_and_dry_run(core: CoreV1Api, namespace: str) -> None:
    # Given a configmap asking for a generated name, sent first as a dry run
    body = {"metadata": {"generateName": "cfg-"}, "data": {"k": "v"}}
    dry = core.create_namespaced_config_map(namespace, body, dry_run="All")

    # When it is created for real
    created = core.create_namespaced_config_map(namespace, body)

    # Then the dry run stored nothing and the real create got a generated name
    assert dry.metadata.name.startswith("cfg-")
    names = [item.metadata.name for item in core.list_namespaced_config_map(namespace).items]
    assert names == [created.metadata.name]
    assert created.metadata.name.startswith("cfg-")
    assert len(created.metadata.name) == len("cfg-") + 5


def test_delete_collection_by_label(core: CoreV1Api, namespace: str) -> None:
    # Given configmaps of two teams
    for name, team in (("a", "red"), ("b", "red"), ("c", "blue")):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"team": team}}})

    # When the red team's are deleted as a collection
    core.delete_collection_namespaced_config_map(namespace, label_selector="team=red")

    # Then only the blue one remains
    assert [item.metadata.name for item in core.list_namespaced_config_map(namespace).items] == ["c"]


def test_replica_set_created_directly_manages_its_pods(apps: AppsV1Api, core: CoreV1Api, namespace: str) -> None:
    # Given a bare ReplicaSet
    body = deployment("cache", "redis:7", replicas=2)
    body.update(kind="ReplicaSet")
    del body["spec"]["strategy"]
    created = apps.create_namespaced_replica_set(namespace, body)

    # When it is scaled up through its scale subresource and then deleted
    wait_until(lambda: len(core.list_namespaced_pod(namespace).items) == 2, what="two pods")
    apps.replace_namespaced_replica_set_scale(
        "cache", namespace, {"metadata": {"name": "cache"}, "spec": {"replicas": 3}}
    )
    ready = wait_until(
        lambda: (rs := apps.read_namespaced_replica_set("cache", namespace)).status.ready_replicas == 3 and rs,
        what="three ready pods",
    )
    pods = core.list_namespaced_pod(namespace).items
    apps.delete_namespaced_replica_set("cache", namespace)

    # Then it kept the pod count, owned its pods and took them with it
    assert ready.status.observed_generation == ready.metadata.generation == 2
    assert all(pod.metadata.owner_references[0].uid == created.metadata.uid for pod in pods)
    assert all(pod.metadata.name.startswith("cache-") for pod in pods)
    assert core.list_namespaced_pod(namespace).items == []
