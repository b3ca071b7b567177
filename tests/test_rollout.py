"""Rollout decisions over plain Kubernetes objects: `kubectl rollout status` and `kubectl rollout undo`, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import ClusterError
from orchestrator.rollout import (
    Phase,
    image_of,
    next_revision,
    plan_undo,
    pod_problems,
    revision_of,
    rollout_status,
    same_template,
    undo_target,
)

UID = "uid-web"


def template(image: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web", **labels}},
        "spec": {"containers": [{"name": "web", "image": image}, {"name": "sidecar", "image": "envoy:1"}]},
    }


def deployment(
    image: str = "nginx:1.25",
    *,
    replicas: int = 3,
    generation: int = 2,
    observed: int = 2,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "demo", "uid": UID, "generation": generation}
    if annotations is not None:
        meta["annotations"] = annotations
    counts = {"replicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"replicas": replicas, "template": template(image)},
        "status": {"observedGeneration": observed, **counts, **(status or {})},
    }


def replica_set(revision: int, image: str, *, owner: str = UID, **annotations: str) -> dict[str, Any]:
    pod_hash = f"hash{revision}"
    return {
        "metadata": {
            "name": f"web-{pod_hash}",
            "annotations": {"deployment.kubernetes.io/revision": str(revision), **annotations},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner, "controller": True}],
        },
        "spec": {"template": template(image, **{"pod-template-hash": pod_hash})},
    }


def deadline(replica_set_name: str) -> dict[str, Any]:
    condition = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": f'ReplicaSet "{replica_set_name}" has timed out progressing.',
    }
    return {"conditions": [{"type": "Available", "status": "True"}, condition]}


# --- rollout status ---


def test_a_rollout_is_complete_when_every_replica_is_updated_and_available() -> None:
    status = rollout_status(deployment())
    assert status.phase is Phase.COMPLETE and status.complete
    assert status.message == 'deployment "web" successfully rolled out'


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"updatedReplicas": 1}, "1 out of 3 new replicas have been updated..."),
        ({"replicas": 5}, "2 old replicas are pending termination..."),
        ({"availableReplicas": 1}, "1 of 3 updated replicas are available..."),
    ],
)
def test_a_rollout_in_progress_says_what_it_waits_for(counts: dict[str, int], message: str) -> None:
    status = rollout_status(deployment(status=counts))
    assert status.phase is Phase.PROGRESSING and not status.complete and not status.failed
    assert status.message == f'Waiting for deployment "web" rollout to finish: {message}'


def test_a_rollout_waits_until_the_latest_generation_is_observed() -> None:
    # Even with every count in place and an old deadline condition: they describe the previous spec
    status = rollout_status(deployment(generation=3, observed=2, status=deadline("web-hash1")))
    assert status.phase is Phase.PROGRESSING
    assert status.message == 'Waiting for deployment "web" spec update to be observed...'


def test_a_rollout_past_its_progress_deadline_has_failed() -> None:
    status = rollout_status(deployment(status={"updatedReplicas": 1, **deadline("web-hash2")}))
    assert status.phase is Phase.FAILED and status.failed
    assert status.message == (
        'deployment "web" exceeded its progress deadline: ReplicaSet "web-hash2" has timed out progressing.'
    )


def test_a_deadline_exceeded_by_a_replica_set_the_deployment_left_is_not_a_failure() -> None:
    # Given a Deployment rolled back to revision 1 while revision 2's deadline condition is still there
    rolled_back = deployment("nginx:1.25", status={"updatedReplicas": 1, **deadline("web-hash2")})
    sets = [replica_set(1, "nginx:1.25"), replica_set(2, "nginx:bad")]

    # Then, knowing its ReplicaSets, the rollout is in progress; without them it looks failed, as in kubectl
    assert rollout_status(rolled_back, sets).phase is Phase.PROGRESSING
    assert rollout_status(rolled_back).phase is Phase.FAILED
    # And a deadline of the current ReplicaSet is a failure either way
    assert rollout_status(deployment("nginx:bad", status=deadline("web-hash2")), sets).phase is Phase.FAILED


@given(
    desired=st.integers(0, 5),
    total=st.integers(0, 8),
    updated=st.integers(0, 8),
    available=st.integers(0, 8),
    lag=st.integers(0, 2),
)
def test_complete_exactly_when_observed_and_every_count_is_the_desired_one(
    desired: int, total: int, updated: int, available: int, lag: int
) -> None:
    counts = {"replicas": total, "updatedReplicas": updated, "availableReplicas": available}
    status = rollout_status(deployment(replicas=desired, generation=2 + lag, observed=2, status=counts))
    assert status.complete == (lag == 0 and total == updated == available == desired)
    assert not status.failed


# --- rollout status, checked against the ReplicaSets ---

REVISION = "deployment.kubernetes.io/revision"


def running(replica_set_: dict[str, Any], replicas: int, available: int | None = None) -> dict[str, Any]:
    """A ReplicaSet as its controller reports it: `replicas` pods, `available` of them available."""
    ready = replicas if available is None else available
    replica_set_["metadata"]["generation"] = 1
    replica_set_["spec"]["replicas"] = replicas
    replica_set_["status"] = {"replicas": replicas, "availableReplicas": ready, "observedGeneration": 1}
    return replica_set_


def misreported(image: str, revision: int) -> dict[str, Any]:
    """A Deployment whose status says complete, as a server with a stale generation makes it look."""
    return deployment(image, generation=2, observed=5, annotations={REVISION: str(revision)})


def test_a_complete_looking_status_is_not_trusted_until_a_replica_set_runs_the_new_template() -> None:
    # Given a Deployment changed to nginx:1.26 whose status (with a misreported generation) looks complete,
    # while its only ReplicaSet still runs the old template
    changed = misreported("nginx:1.26", 1)
    sets = [running(replica_set(1, "nginx:1.25"), 3)]

    # When its rollout is judged with and without its ReplicaSets
    checked, trusted = rollout_status(changed, sets), rollout_status(changed)

    # Then the ReplicaSets show that nothing of the new template runs yet
    assert checked.phase is Phase.PROGRESSING
    assert checked.message == (
        'Waiting for deployment "web" rollout to finish: no ReplicaSet runs the current pod template yet...'
    )
    assert trusted.complete  # what kubectl, reading the status alone, would have said


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ([running(replica_set(1, "nginx:1.25"), 3), running(replica_set(2, "nginx:1.26"), 1, 0)], "0 of 3 pods"),
        ([running(replica_set(1, "nginx:1.25"), 0), running(replica_set(2, "nginx:1.26"), 3, 2)], "2 of 3 pods"),
    ],
)
def test_the_new_replica_set_must_have_every_pod_available(sets: list[dict[str, Any]], message: str) -> None:
    # Given a misreported complete status while revision 2's ReplicaSet is still short of available pods
    # When its rollout is judged
    status = rollout_status(misreported("nginx:1.26", 2), sets)

    # Then it waits for the new ReplicaSet's pods
    assert status.phase is Phase.PROGRESSING
    assert (
        status.message
        == f'Waiting for deployment "web" rollout to finish: {message} of ReplicaSet web-hash2 are available...'
    )


def test_old_replica_sets_must_be_scaled_down() -> None:
    # Given the new ReplicaSet fully available while the old one still has a pod
    sets = [running(replica_set(1, "nginx:1.25"), 1), running(replica_set(2, "nginx:1.26"), 3)]

    # When its rollout is judged
    status = rollout_status(misreported("nginx:1.26", 2), sets)

    # Then it waits for the old pod to go
    assert status.message == 'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...'


def test_the_deployed_revision_is_waited_for_and_a_newer_one_fails() -> None:
    # Given revision 2 fully rolled out
    sets = [running(replica_set(1, "nginx:1.25"), 0), running(replica_set(2, "nginx:1.26"), 3)]
    done = misreported("nginx:1.26", 2)

    # When the rollout is judged for the revision a task deployed: 2, 3 (not made yet) and 1 (since replaced)
    exact, ahead, behind = (rollout_status(done, sets, revision) for revision in (2, 3, 1))

    # Then 2 is complete, 3 is still to come and 1 is a failure naming the revision that replaced it
    assert exact.complete and rollout_status(done, sets).complete
    assert ahead.phase is Phase.PROGRESSING
    assert ahead.message.endswith("ReplicaSet web-hash2 is at revision 2, waiting for revision 3...")
    assert behind.failed
    assert (
        behind.message
        == 'deployment "web" has moved on to revision 2 (ReplicaSet web-hash2) since revision 1 was deployed'
    )


# --- readings ---


def test_the_image_of_the_first_or_a_named_container() -> None:
    assert image_of(deployment("nginx:1.25")) == "nginx:1.25"
    assert image_of(deployment(), "sidecar") == "envoy:1"
    assert image_of(deployment(), "nope") == ""
    assert image_of({"spec": {"containers": [{"name": "a", "image": "busybox"}]}}) == "busybox"  # a Pod
    assert image_of({}) == ""


def test_revisions_are_read_from_the_annotation() -> None:
    assert revision_of(replica_set(4, "nginx:1.25")) == "4"
    assert revision_of(deployment()) == ""
    assert next_revision([replica_set(1, "a"), replica_set(4, "b")]) == "5"
    assert next_revision([]) == "1"


@given(
    labels=st.dictionaries(st.sampled_from(["app", "tier", "track"]), st.text("abc", min_size=1, max_size=3)),
    pod_hash=st.text("0123456789abcdef", min_size=1, max_size=10),
    image=st.sampled_from(["nginx:1.25", "nginx:1.26"]),
)
def test_templates_compare_without_the_hash_label_and_unset_fields(
    labels: dict[str, str], pod_hash: str, image: str
) -> None:
    written = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}}
    stored = {
        "metadata": {"labels": {**labels, "pod-template-hash": pod_hash}, "annotations": {}},
        "spec": {"containers": [{"name": "web", "image": image, "env": []}], "nodeSelector": None},
    }
    assert same_template(written, stored)
    other = "nginx:1.26" if image == "nginx:1.25" else "nginx:1.25"
    assert not same_template(written, {**stored, "spec": {"containers": [{"name": "web", "image": other}]}})


def test_pod_problems_name_each_reason_once_with_a_count() -> None:
    def pod(*waiting: tuple[str, str]) -> dict[str, Any]:
        statuses = [
            {"name": "c", "state": {"waiting": {"reason": reason, "message": message}}} for reason, message in waiting
        ]
        return {"status": {"containerStatuses": statuses}}

    pulling = ("ImagePullBackOff", 'Back-off pulling image "nginx:bad"')
    problems = pod_problems([pod(pulling), pod(pulling), pod(("ContainerCreating", "")), {"status": {}}])
    assert problems == ['ImagePullBackOff: Back-off pulling image "nginx:bad" (2 pods)']


# --- rollout undo ---

HISTORY = [replica_set(1, "nginx:1.25"), replica_set(2, "nginx:1.26"), replica_set(3, "nginx:1.27")]


def test_undo_goes_back_to_the_previous_revision() -> None:
    plan = plan_undo(deployment("nginx:1.27"), HISTORY)
    assert (plan.revision, plan.replica_set, plan.image, plan.needed) == (2, "web-hash2", "nginx:1.26", True)
    # And the controller will run it as the newest revision
    assert plan.revision_after == "4"


def test_undo_goes_back_to_a_given_revision() -> None:
    plan = plan_undo(deployment("nginx:1.27"), HISTORY, revision=1)
    assert (plan.revision, plan.image) == (1, "nginx:1.25")


def test_undo_to_the_template_already_running_is_a_no_op() -> None:
    plan = plan_undo(deployment("nginx:1.27"), HISTORY, revision=3)
    assert plan.patch is None and not plan.needed and plan.revision_after == "3"
    assert plan.message == "skipped rollback (current template already matches revision 3)"


def test_undo_to_a_revision_not_in_the_history_fails() -> None:
    with pytest.raises(ClusterError) as caught:
        undo_target(deployment("nginx:1.27"), HISTORY, revision=7)
    assert caught.value.message == 'deployment "web" has no revision 7 in its history (revisions: 1, 2, 3)'
    assert caught.value.reason == "RevisionNotFound"


def test_undo_without_a_previous_revision_fails() -> None:
    with pytest.raises(ClusterError, match='no rollout history found for deployment "web"') as caught:
        undo_target(deployment("nginx:1.25"), HISTORY[:1])
    assert caught.value.reason == "NoRolloutHistory"


def test_undo_ignores_replica_sets_of_other_deployments() -> None:
    strangers = [replica_set(9, "nginx:9", owner="someone-else")]
    assert plan_undo(deployment("nginx:1.27"), HISTORY + strangers).revision == 2


def test_a_retried_undo_goes_back_to_the_replica_set_it_chose_first() -> None:
    # Given the first try restored revision 2's template, which the controller renumbered 4
    restored = replica_set(4, "nginx:1.26")
    restored["metadata"]["name"] = "web-hash2"
    after_first_try = [HISTORY[0], restored, HISTORY[2]]

    # When the undo is planned again for the same ReplicaSet, Then there is nothing left to do
    plan = plan_undo(deployment("nginx:1.26"), after_first_try, replica_set="web-hash2")
    assert not plan.needed and plan.revision == 4 and plan.revision_after == "4"
    # Whereas a plain undo now would go forward again to 1.27, as kubectl's would
    assert plan_undo(deployment("nginx:1.26"), after_first_try).image == "nginx:1.27"


def test_the_undo_patch_is_the_one_kubectl_sends() -> None:
    # Given a Deployment with its own annotations and a ReplicaSet with a change-cause
    current = deployment(
        "nginx:1.27",
        annotations={"deployment.kubernetes.io/revision": "3", "team": "web", "kubernetes.io/change-cause": "v1.27"},
    )
    target = replica_set(
        2, "nginx:1.26", **{"kubernetes.io/change-cause": "v1.26", "deployment.kubernetes.io/max-replicas": "4"}
    )

    # When the undo to it is planned
    patch = plan_undo(current, [target, replica_set(3, "nginx:1.27")], revision=2).patch

    # Then the template is replaced without its hash label, and the annotations are the ReplicaSet's plus the
    # Deployment's own history ones
    assert patch == [
        {"op": "replace", "path": "/spec/template", "value": template("nginx:1.26")},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {"deployment.kubernetes.io/revision": "3", "kubernetes.io/change-cause": "v1.26"},
        },
    ]


def test_the_undo_patch_adds_annotations_to_a_deployment_that_has_none() -> None:
    patch = plan_undo(deployment("nginx:1.27"), HISTORY).patch
    assert patch is not None and patch[1]["op"] == "add"


@given(revisions=st.lists(st.integers(1, 50), min_size=2, max_size=8, unique=True), data=st.data())
def test_the_previous_revision_is_the_second_newest(revisions: list[int], data: st.DataObject) -> None:
    # Given ReplicaSets with distinct revisions and images, in any order, the Deployment on the newest
    sets = [replica_set(number, f"app:{number}") for number in data.draw(st.permutations(revisions))]
    newest, previous = sorted(revisions)[-1], sorted(revisions)[-2]

    # When an undo is planned, Then it goes to the second newest
    plan = plan_undo(deployment(f"app:{newest}"), sets)
    assert (plan.revision, plan.image, plan.needed) == (previous, f"app:{previous}", True)
    assert plan.patch is not None and image_of({"spec": {"template": plan.patch[0]["value"]}}) == f"app:{previous}"
