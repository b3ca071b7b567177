"""``metadata.generation`` of a Deployment through every write path of the official client: it counts spec
changes one by one and never goes backwards, whatever the patch type, as the real API server counts them."""

from __future__ import annotations

from typing import Any

from kubernetes.client import AppsV1Api, V1Deployment
from kubernetes.client.exceptions import ConflictException

from kubesim_support import deployment, rolled_out

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def _set_image(image: str) -> dict[str, Any]:
    # What `kubectl set image deployment/web app=<image>` sends: a strategic merge on the container list.
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}


def _replace_image(apps: AppsV1Api, namespace: str, image: str) -> V1Deployment:
    # Read-modify-replace as client-go's RetryOnConflict does: the controller's status writes move the
    # resourceVersion between the read and the PUT, and the server rightly refuses the stale one with 409.
    while True:
        current = apps.read_namespaced_deployment("web", namespace)
        current.spec.template.spec.containers[0].image = image
        try:
            return apps.replace_namespaced_deployment("web", namespace, current)
        except ConflictException:
            continue


def test_generation_goes_up_by_one_on_every_kind_of_spec_write(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment created at generation 1 and already moved on twice, so a count restarting at 1 shows
    created = apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25"))
    generations = [created.metadata.generation]
    for replicas in (4, 5):
        scaled = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": replicas}})
        generations.append(scaled.metadata.generation)

    # When the spec changes through each write path in turn
    writes = [
        lambda: apps.patch_namespaced_deployment("web", namespace, _set_image("nginx:1.26"), _content_type=STRATEGIC),
        lambda: apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 2}}, _content_type=MERGE),
        lambda: apps.patch_namespaced_deployment(
            "web", namespace, [{"op": "replace", "path": "/spec/replicas", "value": 3}], _content_type=JSON_PATCH
        ),
        lambda: apps.patch_namespaced_deployment(
            "web", namespace, deployment("web", "nginx:1.27"), field_manager="test", _content_type=APPLY
        ),
    ]
    for write in writes:
        generations.append(write().metadata.generation)
    generations.append(_replace_image(apps, namespace, "nginx:1.28").metadata.generation)

    # Then each write answered exactly one more than the one before, and a read agrees with the last answer
    assert generations == list(range(1, 9))
    assert apps.read_namespaced_deployment("web", namespace).metadata.generation == 8


def test_status_and_label_writes_keep_the_generation(apps: AppsV1Api, namespace: str) -> None:
    # Given a rolled-out deployment whose spec changed once after its creation
    apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25", replicas=1))
    apps.patch_namespaced_deployment("web", namespace, _set_image("nginx:1.26"))
    rolled_out(apps, namespace, "web")

    # When only its status, then only a label, is written (with a merge patch, which used to restart the count)
    status = apps.patch_namespaced_deployment_status(
        "web", namespace, {"status": {"collisionCount": 1}}, _content_type=MERGE
    )
    labelled = apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"team": "a"}}}, _content_type=MERGE
    )

    # Then neither bumps the generation nor moves it back
    assert status.metadata.generation == 2
    assert labelled.metadata.generation == 2
    assert apps.read_namespaced_deployment("web", namespace).metadata.generation == 2
