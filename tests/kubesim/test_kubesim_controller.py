"""The controllers stepped by hand on a manual clock, and their pure parts."""

from __future__ import annotations

from typing import Any

from kubesim import KubeSim
from kubesim.clock import ManualClock, timestamp
from kubesim.kubelet import CRASHING, CREATING, PULL_BACKOFF, PULL_ERROR, RUNNING, ContainerRecord, ImageFate, advance
from kubesim.progress import condition, set_condition, timed_out
from kubesim.replicasets import deletion_order
from kubesim.resources import DEPLOYMENTS, NAMESPACES, PODS

from kubesim_support import deployment


def stepped_sim(clock: ManualClock, **options: Any) -> KubeSim:
    """An emulator that is never started: tests call ``controllers.step()`` themselves."""
    sim = KubeSim(clock=clock, ready_delay=1.0, **options)
    sim.registry.create(NAMESPACES, "", {"metadata": {"name": "demo"}})
    return sim


def progressing(sim: KubeSim) -> tuple[str, str]:
    status = sim.registry.get(DEPLOYMENTS, "demo", "web")["status"]
    found = next(c for c in status["conditions"] if c["type"] == "Progressing")
    return found["status"], found["reason"]


def test_progress_deadline_follows_the_injected_clock() -> None:
    # Given a deployment of an unpullable image with a 10 s progress deadline, on a manual clock
    clock = ManualClock()
    sim = stepped_sim(clock, unpullable=["bad:*"])
    sim.registry.create(DEPLOYMENTS, "demo", deployment("web", "bad:1", replicas=1, deadline=10))

    # When the controllers run as time passes, short of and then past the deadline
    sim.controllers.step()
    sim.controllers.step()
    started = progressing(sim)
    clock.advance(9)
    sim.controllers.step()
    before = progressing(sim)
    clock.advance(2)
    sim.controllers.step()
    after = progressing(sim)

    # Then progress is reported until the deadline, then ProgressDeadlineExceeded
    assert started == ("True", "ReplicaSetUpdated")
    assert before == ("True", "ReplicaSetUpdated")
    assert after == ("False", "ProgressDeadlineExceeded")


def test_pods_become_ready_after_the_ready_delay() -> None:
    # Given a deployment on a manual clock with a one-second ready delay
    clock = ManualClock()
    sim = stepped_sim(clock)
    sim.registry.create(DEPLOYMENTS, "demo", deployment("web", "app:1", replicas=2))

    # When the controllers run before and after the delay
    sim.controllers.step()
    sim.controllers.step()
    early = [pod["status"]["phase"] for pod in sim.registry.select(PODS, "demo")]
    clock.advance(1.0)
    sim.controllers.step()
    late = [pod["status"]["phase"] for pod in sim.registry.select(PODS, "demo")]
    sim.controllers.step()
    status = sim.registry.get(DEPLOYMENTS, "demo", "web")["status"]

    # Then pods are Pending, then Running, and the deployment completes
    assert early == ["Pending", "Pending"]
    assert late == ["Running", "Running"]
    assert (status["availableReplicas"], status["updatedReplicas"]) == (2, 2)
    assert progressing(sim) == ("True", "NewReplicaSetAvailable")


def test_container_timeline() -> None:
    # Given a container born at t=0 with a one-second delay
    unpullable, crashing, fine = ImageFate(unpullable=True), ImageFate(crashing=True), ImageFate()
    record = ContainerRecord()

    # When its image cannot be pulled, then can, then crashes, then is fixed
    creating = advance(record, unpullable, 0.0, 0.5, 1.0)
    pull_error = advance(creating, unpullable, 0.0, 1.0, 1.0)
    backoff = advance(pull_error, unpullable, 0.0, 2.0, 1.0)
    running = advance(backoff, fine, 0.0, 3.0, 1.0)
    crashed = advance(running, crashing, 0.0, 4.0, 1.0)
    recovered = advance(crashed, fine, 0.0, 10.0, 1.0)

    # Then it walks the kubelet's states, counting restarts across the crash loop
    assert [creating.state, pull_error.state, backoff.state] == [CREATING, PULL_ERROR, PULL_BACKOFF]
    assert (running.state, running.started) == (RUNNING, 3.0)
    assert crashed.state == CRASHING
    assert recovered.state == RUNNING
    assert recovered.restarts == 4


def pod(name: str, *, phase: str = "Running", ready_at: float | None = None, created: float = 0.0) -> dict[str, Any]:
    conditions = []
    if ready_at is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": timestamp(ready_at)})
    return {
        "metadata": {"name": name, "creationTimestamp": timestamp(created)},
        "spec": {"nodeName": "n"},
        "status": {"phase": phase, "conditions": conditions},
    }


def test_scale_down_removes_pending_then_unready_then_newest_ready_pods() -> None:
    # Given pods in every state
    pods = [
        pod("old-ready", ready_at=100, created=10),
        pod("new-ready", ready_at=200, created=20),
        pod("unready"),
        pod("pending", phase="Pending"),
    ]

    # When they are ranked for deletion
    order = [p["metadata"]["name"] for p in deletion_order(pods)]

    # Then the least useful go first
    assert order == ["pending", "unready", "new-ready", "old-ready"]


def test_conditions_keep_transition_time_and_time_out() -> None:
    # Given a Progressing condition set at t=0
    status: dict[str, Any] = {}
    set_condition(status, condition("Progressing", "True", "NewReplicaSetCreated", "m", 0.0))

    # When it is updated with the same status later, and the deadline is checked
    set_condition(status, condition("Progressing", "True", "ReplicaSetUpdated", "m", 60.0))

    # Then the transition time stays, the update time moves, and the deadline counts from the update
    (found,) = status["conditions"]
    assert found["lastTransitionTime"] == timestamp(0.0)
    assert found["lastUpdateTime"] == timestamp(60.0)
    assert not timed_out(status, 600, 600.0)
    assert timed_out(status, 600, 661.0)
