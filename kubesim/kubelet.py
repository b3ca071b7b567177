"""The simulated node: each pod's containers go from creating to running (or fail to pull, or crash-loop) on a
timeline driven by the image policy, and the pod's status is rendered from that timeline.

A pod that is not restarted Always (a Job's) runs to completion: its containers exit ``delay`` seconds after they
start, 0 or 1 as the command policy says, and the pod ends Succeeded or Failed. What such a container printed is
kubesim's transcript of its command (see ``commands.py``), kept for the pod's log."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from kubesim.clock import Clock, timestamp
from kubesim.commands import CommandPolicy, transcript
from kubesim.images import ImagePolicy
from kubesim.network import NODE_IP, Network
from kubesim.objects import name_of, namespace_of, nested, uid_of
from kubesim.registry import Registry
from kubesim.resources import CONFIGMAPS, PODS, SECRETS
from kubesim.status import JsonObject

CREATING = "creating"
PULL_ERROR = "pull-error"
PULL_BACKOFF = "pull-backoff"
RUNNING = "running"
CRASHING = "crashing"
EXITED = "exited"


@dataclass(frozen=True)
class ContainerRecord:
    """Where one container is on its timeline."""

    state: str = CREATING
    since: float = 0.0  # when the container entered ``state``
    restarts: int = 0  # restarts counted before ``since``
    started: float | None = None  # when it first ran
    exit_code: int = 0  # once EXITED


@dataclass(frozen=True)
class ImageFate:
    """What the image policy says about one container's image right now."""

    unpullable: bool = False
    crashing: bool = False
    completes: bool = False  # the pod is not restarted Always: its containers exit when their command ends


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
    if fate.completes:
        return record  # a running container exits when its command has run (see `Kubelet._exit`)
    if record.state == RUNNING and fate.crashing:
        return ContainerRecord(CRASHING, now, record.restarts, record.started)
    if record.state == CRASHING and not fate.crashing:
        return ContainerRecord(RUNNING, now, restarts_at(record, now, delay), record.started)
    return record


def _start(record: ContainerRecord, fate: ImageFate, now: float) -> ContainerRecord:
    # A container that runs to completion does not loop: its crash is its exit (see `Kubelet._exit`).
    crashes = fate.crashing and not fate.completes
    return ContainerRecord(CRASHING if crashes else RUNNING, now, record.restarts, now)


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
    elif record.state == EXITED:
        started = timestamp(record.started if record.started is not None else record.since)
        reason = "Completed" if record.exit_code == 0 else "Error"
        terminated = {"exitCode": record.exit_code, "reason": reason, "startedAt": started}
        terminated.update(finishedAt=timestamp(record.since), containerID=status.get("containerID", ""))
        status["state"] = {"terminated": terminated}
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

    def __init__(
        self,
        registry: Registry,
        images: ImagePolicy,
        network: Network,
        clock: Clock,
        ready_delay: float,
        *,
        commands: CommandPolicy | None = None,
    ):
        self._registry = registry
        self._images = images
        self._commands = commands or CommandPolicy()
        self._network = network
        self._clock = clock
        self._delay = ready_delay
        self._pods: dict[str, PodRecord] = {}
        self._logs: dict[tuple[str, str], str] = {}  # (pod uid, container) -> what it printed

    def log_of(self, pod: JsonObject, container: str | None) -> str | None:
        """What a pod's container (its first, when None) printed, once its command has run; None before."""
        names = [str(c.get("name")) for c in nested(pod, "spec", "containers") or [] if isinstance(c, dict)]
        chosen = container or (names[0] if names else "")
        return self._logs.get((uid_of(pod), chosen))

    def sync(self) -> None:
        """Advance every pod's timeline and write the statuses that changed."""
        now = self._clock.now()
        pods = self._registry.store.list(PODS.qualified)
        alive = {uid_of(pod) for pod in pods}
        for uid in set(self._pods) - alive:
            del self._pods[uid]
        for key in [key for key in self._logs if key[0] not in alive]:
            del self._logs[key]
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
        completes = nested(pod, "spec", "restartPolicy") in ("Never", "OnFailure")
        statuses = []
        for container in containers:
            image = str(container.get("image"))
            fate = ImageFate(self._images.unpullable(image), self._images.crashing(image), completes)
            current = record.containers.get(str(container.get("name")), ContainerRecord(since=record.born))
            current = advance(current, fate, record.born, now, self._delay)
            if completes and current.state == RUNNING and now >= current.since + self._delay:
                current = self._exit(pod, container, current, now)
            record.containers[str(container.get("name"))] = current
            statuses.append(container_status(container, current, now, self._delay, name_of(pod)))
        ready = bool(statuses) and all(status["ready"] for status in statuses)
        if ready != record.ready:
            record.ready, record.ready_changed = ready, now
        exits = [record.containers[str(c.get("name"))] for c in containers]
        ended = completes and bool(exits) and all(c.state == EXITED for c in exits)
        return _pod_status(record, statuses, (max(c.exit_code for c in exits) if ended else None))

    def _exit(self, pod: JsonObject, container: JsonObject, record: ContainerRecord, now: float) -> ContainerRecord:
        """A run-to-completion container's command has run: keep what it printed, and exit as the policy says."""
        image = str(container.get("image"))
        command = [str(word) for word in (container.get("command") or []) + (container.get("args") or [])]
        fails = self._commands.fails(image) or self._images.crashing(image)
        told = transcript(command, self._environment(pod, container), self._commands.variables(), fails)
        self._logs[(uid_of(pod), str(container.get("name")))] = told.text
        return ContainerRecord(EXITED, now, record.restarts, record.started, told.exit_code)

    def _environment(self, pod: JsonObject, container: JsonObject) -> dict[str, str]:
        """The container's environment as the real kubelet builds it: values, and keys of Secrets and ConfigMaps."""
        env: dict[str, str] = {}
        for entry in container.get("env") or []:
            if not isinstance(entry, dict) or not entry.get("name"):
                continue
            source = entry.get("valueFrom") or {}
            if "value" in entry or not source:
                env[str(entry["name"])] = str(entry.get("value") or "")
            elif isinstance(source.get("secretKeyRef"), dict):
                env[str(entry["name"])] = self._key(pod, source["secretKeyRef"], secret=True)
            elif isinstance(source.get("configMapKeyRef"), dict):
                env[str(entry["name"])] = self._key(pod, source["configMapKeyRef"], secret=False)
        return env

    def _key(self, pod: JsonObject, ref: JsonObject, secret: bool) -> str:
        kind = SECRETS if secret else CONFIGMAPS
        found = self._registry.store.get(kind.qualified, namespace_of(pod), str(ref.get("name")))
        value = str(((found or {}).get("data") or {}).get(str(ref.get("key"))) or "")
        if not secret:
            return value
        try:
            return base64.b64decode(value).decode(errors="replace")
        except (binascii.Error, ValueError):
            return ""


def _pod_status(record: PodRecord, statuses: list[JsonObject], exit_code: int | None = None) -> JsonObject:
    # A pod is Pending until every container has started once; crash-looping ones keep it Running; one whose
    # containers have all exited has Succeeded, or Failed when one exited non-zero.
    pending = any("waiting" in status["state"] and not status.get("containerID") for status in statuses)
    phase = "Pending" if pending else "Running"
    if exit_code is not None:
        phase = "Succeeded" if exit_code == 0 else "Failed"
    born, changed = timestamp(record.born), timestamp(record.ready_changed)
    unready = [status["name"] for status in statuses if not status["ready"]]
    ready_condition: JsonObject = {"status": "True" if record.ready else "False", "lastTransitionTime": changed}
    if exit_code is not None:
        ready_condition.update(reason="PodCompleted")
    elif not record.ready:
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
        "phase": phase,
        "conditions": conditions,
        "hostIP": NODE_IP,
        "podIP": record.ip,
        "podIPs": [{"ip": record.ip}],
        "startTime": born,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    }
