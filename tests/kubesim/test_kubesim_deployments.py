"""The simulated controllers through the official client: rollouts, deadlines, rollbacks, history and cascade."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import AppsV1Api, CoreV1Api

from kubesim import KubeSim
from kubesim.rollout import max_unavailable, resolve_fenceposts

from kubesim_support import condition, deployment, rolled_out, wait_until

REVISION = "deployment.kubernetes.io/revision"


def set_image(apps: AppsV1Api, namespace: str, name: str, image: str) -> None:
    """What ``kubectl set image`` sends: a strategic merge patch of one container."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps.patch_namespaced_deployment(name, namespace, patch)


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [(4, 1, 0), (4, 0, 1), (5, "25%", "25%"), (3, 2, 1)])
def test_rolling_update_respects_surge_and_unavailability_at_every_step(
    apps: AppsV1Api, core: CoreV1Api, namespace: str, replicas: int, surge: int | str, unavailable: int | str
) -> None:
    # Given a rolled-out deployment
    body = deployment("web", "app:1", replicas=replicas, max_surge=surge, max_unavailable=unavailable)
    apps.create_namespaced_deployment(namespace, body)
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="first rollout")
    listing = core.list_namespaced_pod(namespace)
    since = listing.metadata.resource_version
    pods = {p.metadata.name: (p.spec.containers[0].image, pod_ready(p)) for p in listing.items}
    ceiling = replicas + resolve_fenceposts(surge, unavailable, replicas)[0]
    floor = replicas - max_unavailable(replicas, "RollingUpdate", surge, unavailable)

    # When the image changes and every pod event of the rollout is observed
    set_image(apps, namespace, "web", "app:2")
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_pod, namespace, resource_version=since, timeout_seconds=60):
        pod = event["object"]
        if event["type"] == "DELETED":
            pods.pop(pod.metadata.name, None)
        else:
            pods[pod.metadata.name] = (pod.spec.containers[0].image, pod_ready(pod))

        # Then no step exceeds the surge or drops below the availability floor
        assert len(pods) <= ceiling
        assert sum(ready for _, ready in pods.values()) >= floor
        if len(pods) == replicas and all(image == "app:2" and ready for image, ready in pods.values()):
            watcher.stop()

    # And the deployment reports a completed rollout with the real conditions
    done = wait_until(lambda: rolled_out(apps, namespace, "web"), what="second rollout")
    assert done.status.ready_replicas == replicas
    assert not done.status.unavailable_replicas
    available, progressing = condition(done, "Available"), condition(done, "Progressing")
    assert (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    assert done.metadata.annotations[REVISION] == "2"


def test_replica_sets_carry_hash_revision_and_owner(apps: AppsV1Api, core: CoreV1Api, namespace: str) -> None:
    # Given a deployment
    created = apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))

    # When it has rolled out
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout")
    (replica_set,) = apps.list_namespaced_replica_set(namespace).items
    pods = core.list_namespaced_pod(namespace).items

    # Then its ReplicaSet is named and labelled by the pod template hash and owned by the deployment
    pod_hash = replica_set.metadata.labels["pod-template-hash"]
    assert replica_set.metadata.name == f"web-{pod_hash}"
    assert replica_set.spec.selector.match_labels == {"app": "web", "pod-template-hash": pod_hash}
    assert replica_set.metadata.annotations[REVISION] == "1"
    owner = replica_set.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == ("Deployment", created.metadata.uid, True)
    assert len(pods) == 2
    assert all(pod.metadata.name.startswith(f"web-{pod_hash}-") for pod in pods)
    assert all(pod.metadata.owner_references[0].uid == replica_set.metadata.uid for pod in pods)


def test_unpullable_image_exceeds_the_progress_deadline(
    sim: KubeSim, apps: AppsV1Api, core: CoreV1Api, namespace: str
) -> None:
    # Given a rolled-out deployment with a short progress deadline, and an image the cluster cannot pull
    sim.set_images(unpullable=["app:bad*"])
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2, deadline=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="first rollout")

    # When the deployment moves to the bad image
    set_image(apps, namespace, "web", "app:bad-1")

    # Then the rollout stalls, the deadline passes with the real reason, and the old pods keep serving
    def timed_out() -> Any:
        found = apps.read_namespaced_deployment("web", namespace)
        cond = condition(found, "Progressing")
        return found if cond is not None and cond.reason == "ProgressDeadlineExceeded" else None

    stalled = wait_until(timed_out, what="the progress deadline")
    assert condition(stalled, "Progressing").status == "False"
    assert condition(stalled, "Available").status == "True"
    assert stalled.status.available_replicas == 2
    bad = [p for p in core.list_namespaced_pod(namespace).items if p.spec.containers[0].image == "app:bad-1"]
    assert bad
    waiting = bad[0].status.container_statuses[0].state.waiting
    assert bad[0].status.phase == "Pending"
    assert waiting.reason in ("ErrImagePull", "ImagePullBackOff")


def test_crashing_image_loops_with_growing_restart_count(sim: KubeSim, core: CoreV1Api, namespace: str) -> None:
    # Given an image the cluster is told crashes
    sim.set_images(crashing=["app:crash"])

    # When a pod runs it
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "app:crash"}]}}
    )

    # Then it is Running but never Ready, in CrashLoopBackOff with restarts piling up
    def restarted_twice() -> Any:
        status = core.read_namespaced_pod("p", namespace).status
        statuses = status.container_statuses or []
        return status if statuses and statuses[0].restart_count >= 2 else None

    status = wait_until(restarted_twice, what="two restarts")
    container = status.container_statuses[0]
    assert status.phase == "Running"
    assert container.ready is False
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert container.last_state.terminated.exit_code == 1


def test_rollback_restamps_the_old_replica_set(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment rolled from app:1 (revision 1) to app:2 (revision 2)
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="first rollout")
    set_image(apps, namespace, "web", "app:2")
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="second rollout")

    # When it is rolled back the way kubectl rollout undo does: a JSON patch restoring revision 1's template
    sets = apps.list_namespaced_replica_set(namespace).items
    previous = next(rs for rs in sets if rs.metadata.annotations[REVISION] == "1")
    template = apps.api_client.sanitize_for_serialization(previous.spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    patch = [{"op": "replace", "path": "/spec/template", "value": template}]
    apps.patch_namespaced_deployment("web", namespace, patch)
    done = wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollback")

    # Then the old ReplicaSet is reused and re-stamped with the next revision, as the real controller does
    restored = apps.read_namespaced_replica_set(previous.metadata.name, namespace)
    assert restored.metadata.annotations[REVISION] == "3"
    assert restored.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert restored.spec.replicas == 2
    assert done.metadata.annotations[REVISION] == "3"
    assert done.spec.template.spec.containers[0].image == "app:1"
    assert len(apps.list_namespaced_replica_set(namespace).items) == 2


def test_revision_history_limit_prunes_idle_replica_sets(apps: AppsV1Api, namespace: str) -> None:
    # Given a deployment keeping one old revision
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=1, history=1))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="first rollout")

    # When it goes through three more images
    for version in (2, 3, 4):
        set_image(apps, namespace, "web", f"app:{version}")
        wait_until(lambda: rolled_out(apps, namespace, "web"), what=f"rollout of app:{version}")

    # Then only the newest old ReplicaSet survives beside the current one
    def pruned() -> list[str]:
        sets = apps.list_namespaced_replica_set(namespace).items
        revisions = sorted(rs.metadata.annotations[REVISION] for rs in sets)
        return revisions if revisions == ["3", "4"] else []

    assert wait_until(pruned, what="history pruning") == ["3", "4"]


def test_recreate_strategy_replaces_all_pods_at_once(apps: AppsV1Api, core: CoreV1Api, namespace: str) -> None:
    # Given a rolled-out deployment with the Recreate strategy
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=3, recreate=True))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="first rollout")
    listing = core.list_namespaced_pod(namespace)
    live = {pod.metadata.name: pod.spec.containers[0].image for pod in listing.items}

    # When its image changes
    set_image(apps, namespace, "web", "app:2")
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="recreate rollout")

    # Then no new pod was created before every old one was gone
    since = listing.metadata.resource_version
    for event in watch.Watch().stream(core.list_namespaced_pod, namespace, resource_version=since, timeout_seconds=1):
        pod = event["object"]
        if event["type"] == "DELETED":
            live.pop(pod.metadata.name)
        elif event["type"] == "ADDED":
            assert "app:1" not in live.values() or pod.spec.containers[0].image == "app:1"
            live[pod.metadata.name] = pod.spec.containers[0].image
    assert sorted(live.values()) == ["app:2"] * 3


def test_paused_deployment_holds_its_rollout(apps: AppsV1Api, namespace: str) -> None:
    # Given a rolled-out deployment that is then paused
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="first rollout")
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"paused": True}})

    # When its image changes while paused
    set_image(apps, namespace, "web", "app:2")
    paused = wait_until(
        lambda: (
            (d := apps.read_namespaced_deployment("web", namespace)).status.observed_generation == d.metadata.generation
            and d
        ),
        what="the paused spec to be observed",
    )

    # Then no new ReplicaSet appears and the Progressing condition says so; resuming rolls out
    assert condition(paused, "Progressing").reason == "DeploymentPaused"
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"paused": False}})
    done = wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout after resuming")
    assert done.metadata.annotations[REVISION] == "2"


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_deleting_a_deployment_cascades(apps: AppsV1Api, core: CoreV1Api, namespace: str, policy: str) -> None:
    # Given a rolled-out deployment with pods
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout")

    # When it is deleted
    apps.delete_namespaced_deployment("web", namespace, propagation_policy=policy)

    # Then its ReplicaSets and their pods go with it
    assert apps.list_namespaced_replica_set(namespace).items == []
    assert core.list_namespaced_pod(namespace).items == []


def test_orphan_deletion_keeps_dependents(apps: AppsV1Api, core: CoreV1Api, namespace: str) -> None:
    # Given a rolled-out deployment
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout")

    # When it is deleted with the Orphan policy
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Orphan")

    # Then its ReplicaSet stays, without an owner, and keeps its pods
    (replica_set,) = apps.list_namespaced_replica_set(namespace).items
    assert replica_set.metadata.owner_references is None
    assert len(core.list_namespaced_pod(namespace).items) == 2


def test_deleted_pods_are_replaced(apps: AppsV1Api, core: CoreV1Api, namespace: str) -> None:
    # Given a rolled-out deployment
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout")
    victim = core.list_namespaced_pod(namespace).items[0].metadata.name

    # When one of its pods is deleted
    core.delete_namespaced_pod(victim, namespace)

    # Then the ReplicaSet makes a new one
    def replaced() -> list[str]:
        names = [pod.metadata.name for pod in core.list_namespaced_pod(namespace).items]
        return names if len(names) == 2 and victim not in names else []

    assert wait_until(replaced, what="a replacement pod")
