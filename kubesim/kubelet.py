"""The simulated node: each pod's containers go from creating to running (or fail to pull, or crash-loop) on a
timeline driven by the image policy, and the pod's status is rendered from that timeline."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kubesim.clock import Clock, timestamp
from kubesim.images import ImagePolicy
from kubesim.network import NODE_IP, Network
from kubesim.objects import name_of, uid_of
from kubesim.registry import Registry
from kubesim.resources import PODS
from kubesim.status import JsonObject

CREATING = "creating"
PULL_ERROR = "pull-error"
PULL_BACKOFF = "pull-backoff"
RUNNING = "running"
CRASHING = "crashing"


@dataclass(frozen=True)
class ContainerRecord:
    """Where one container is on its timeline."""

    state: str = CREATING
    since: float = 0.0  # when the container entered ``state``
    restarts: int = 0  # restarts counted before ``since``
    started: float | None = None  # when it first ran


@dataclass(frozen=True)
class ImageFate:
    """What the image policy says about one container's image right now."""

    unpullable: bool = False
    crashing: bool = False


def advance(record: ContainerRecord, fate: ImageFate, born: float, now: float, delay: float) -> ContainerRecord:
    """The container's next record: pulls and starts ``delay`` seconds after the pod was born, then follows its
    image's fate (a pull failure backs off, a crash loops, a fixed image recovers)."""
    if record.state == CREATING and now < born + delay:
        return record
    if record.state in (CREATING, PULL_ERROR, PULL_BACKOFF):
        if fate.unpullable:
            if record.state == CREATING:
                return ContainerRecord(PULL_ERROR, now)
            return ContainerRecord(PULL_BACKOFF, record.since) if now >= record.since + delay else record
        return _start(record, fate, now)
    if record.state == RUNNING and fate.crashing:
        return ContainerRecord(CRASHING, now, record.restarts, record.started)
    if record.state == CRASHING and not fate.crashing:
        return ContainerRecord(RUNNING, now, restarts_at(record, now, delay), record.started)
    return record


def _start(record: ContainerRecord, fate: ImageFate, now: float) -> ContainerRecord:
    return ContainerRecord(CRASHING if fate.crashing else RUNNING, now, record.restarts, now)


def restart_interval(delay: float) -> float:
    """How often a crash-looping container restarts (the real back-off starts at 10 s; ours scales with the delay)."""
    return max(2 * delay, 0.5)


def restarts_at(record: ContainerRecord, now: float, delay: float) -> int:
    """The container's restart count at ``now``."""
    if record.state != CRASHING:
        return record.restarts
    return record.restarts + 1 + int((now - record.since) / restart_interval(delay))


def container_status(container: JsonObject, record: ContainerRecord, now: float, delay: float, pod: str) -> JsonObject:
    """One entry of ``status.containerStatuses``."""
    name, image = str(container.get("name")), str(container.get("image"))
    status: JsonObject = {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": record.state == RUNNING,
        "restartCount": restarts_at(record, now, delay),
        "started": record.state == RUNNING,
        "lastState": {},
    }
    if record.started is not None:
        status["imageID"] = f"docker-pullable://{image.split(':', maxsplit=1)[0]}@sha256:{_digest(image)}"
        status["containerID"] = f"containerd://{_digest(pod + name)}"
    if record.state == RUNNING:
        status["state"] = {"running": {"startedAt": timestamp(record.since)}}
    elif record.state == CRASHING:
        message = f"back-off 10s restarting failed container={name} pod={pod}"
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        finished = timestamp(record.since)
        terminated = {"exitCode": 1, "reason": "Error", "startedAt": finished, "finishedAt": finished}
        status["lastState"] = {"terminated": terminated}
    elif record.state == CREATING:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    else:
        reason = "ErrImagePull" if record.state == PULL_ERROR else "ImagePullBackOff"
        message = (
            f'Back-off pulling image "{image}"' if record.state == PULL_BACKOFF else f'rpc error: pull "{image}" failed'
        )
        status["state"] = {"waiting": {"reason": reason, "message": message}}
    return status


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class PodRecord:
    """The node's memory of one pod."""

    born: float
    ip: str
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    ready: bool = False
    ready_changed: float = 0.0


class Kubelet:
    """Runs every pod on one simulated node and writes their statuses."""

    def __init__(self, registry: Registry, images: ImagePolicy, network: Network, clock: Clock, ready_delay: float):
        self._registry = registry
        self._images = images
        self._network = network
        self._clock = clock
        self._delay = ready_delay
        self._pods: dict[str, PodRecord] = {}

    def sync(self) -> None:
        """Advance every pod's timeline and write the statuses that changed."""
        now = self._clock.now()
        pods = self._registry.store.list(PODS.qualified)
        alive = {uid_of(pod) for pod in pods}
        for uid in set(self._pods) - alive:
            del self._pods[uid]
        for pod in pods:
            status = self._status(pod, now)
            if status != pod.get("status"):
                self._registry.write_status(PODS, {**pod, "status": status})

    def _status(self, pod: JsonObject, now: float) -> JsonObject:
        record = self._pods.get(uid_of(pod))
        if record is None:
            ip = (pod.get("status") or {}).get("podIP") or self._network.pod_ips.allocate()
            record = self._pods[uid_of(pod)] = PodRecord(born=now, ip=ip, ready_changed=now)
        containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
        statuses = []
        for container in containers:
            image = str(container.get("image"))
            fate = ImageFate(self._images.unpullable(image), self._images.crashing(image))
            current = record.containers.get(str(container.get("name")), ContainerRecord(since=record.born))
            current = record.containers[str(container.get("name"))] = advance(
                current, fate, record.born, now, self._delay
            )
            statuses.append(container_status(container, current, now, self._delay, name_of(pod)))
        ready = bool(statuses) and all(status["ready"] for status in statuses)
        if ready != record.ready:
            record.ready, record.ready_changed = ready, now
        return _pod_status(record, statuses)


def _pod_status(record: PodRecord, statuses: list[JsonObject]) -> JsonObject:
    # A pod is Pending until every container has started once; crash-looping ones keep it Running.
    pending = any("waiting" in status["state"] and not status.get("containerID") for status in statuses)
    born, changed = timestamp(record.born), timestamp(record.ready_changed)
    unready = [status["name"] for status in statuses if not status["ready"]]
    ready_condition: JsonObject = {"status": "True" if record.ready else "False", "lastTransitionTime": changed}
    if not record.ready:
        ready_condition.update(
            reason="ContainersNotReady", message=f"containers with unready status: [{' '.join(unready)}]"
        )
    conditions = [
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": born},
        {"type": "Ready", "lastProbeTime": None, **ready_condition},
        {"type": "ContainersReady", "lastProbeTime": None, **ready_condition},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": born},
    ]
    return {
        "phase": "Pending" if pending else "Running",
        "conditions": conditions,
        "hostIP": NODE_IP,
        "podIP": record.ip,
        "podIPs": [{"ip": record.ip}],
        "startTime": born,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    }
