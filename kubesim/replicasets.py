"""The simulated ReplicaSet controller: keep each ReplicaSet's pod count at ``spec.replicas`` and report its
ready and available pods."""

from __future__ import annotations

from kubesim.clock import Clock, parse_timestamp
from kubesim.objects import controller_reference, deep_copy, labels_of, metadata, name_of, namespace_of, uid_of
from kubesim.objects import controller_uid as owner_of
from kubesim.registry import Registry
from kubesim.resources import PODS, REPLICASETS
from kubesim.status import ApiError, JsonObject

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_ready_since(pod: JsonObject) -> float | None:
    """When the pod last became Ready, or ``None`` while it is not Ready."""
    for found in (pod.get("status") or {}).get("conditions") or []:
        if found.get("type") == "Ready":
            return parse_timestamp(found["lastTransitionTime"]) if found.get("status") == "True" else None
    return None


def pod_available(pod: JsonObject, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``minReadySeconds``."""
    since = pod_ready_since(pod)
    return since is not None and (min_ready_seconds == 0 or since + min_ready_seconds <= now)


def deletion_order(pods: list[JsonObject]) -> list[JsonObject]:
    """Pods in the order a scale-down removes them, as the real ``ActivePods`` ranking: unscheduled, pending and
    unready pods first, then the most recently ready, the most restarted and the newest."""

    def rank(pod: JsonObject) -> tuple[int, int, int, float, int, str, str]:
        status = pod.get("status") or {}
        since = pod_ready_since(pod)
        restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
        return (
            1 if (pod.get("spec") or {}).get("nodeName") else 0,
            _PHASE_RANK.get(str(status.get("phase")), 0),
            0 if since is None else 1,
            -(since or 0.0),
            -restarts,
            _negated(str(metadata(pod).get("creationTimestamp") or "")),
            name_of(pod),
        )

    return sorted(pods, key=rank)


def _negated(text: str) -> str:
    """A sort key that orders timestamps newest first."""
    return "".join(chr(0x10FFFF - ord(char)) for char in text)


class ReplicaSetController:
    """Creates and deletes pods for every ReplicaSet and writes ReplicaSet statuses."""

    def __init__(self, registry: Registry, clock: Clock):
        self._registry = registry
        self._clock = clock

    def sync_pods(self) -> None:
        """Create or delete pods so each ReplicaSet owns ``spec.replicas`` of them."""
        pods = self._pods_by_owner()
        for replica_set in self._registry.store.list(REPLICASETS.qualified):
            owned = pods.get(uid_of(replica_set), [])
            missing = int((replica_set.get("spec") or {}).get("replicas") or 0) - len(owned)
            for pod in deletion_order(owned)[: max(-missing, 0)]:
                self._registry.delete(PODS, namespace_of(pod), name_of(pod))
            for _ in range(max(missing, 0)):
                self._create_pod(replica_set)

    def sync_status(self) -> None:
        """Write each ReplicaSet's replica, ready and available counts when they changed."""
        now = self._clock.now()
        pods = self._pods_by_owner()
        for replica_set in self._registry.store.list(REPLICASETS.qualified):
            spec = replica_set.get("spec") or {}
            owned = pods.get(uid_of(replica_set), [])
            template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            min_ready = int(spec.get("minReadySeconds") or 0)
            counts = {
                "replicas": len(owned),
                "fullyLabeledReplicas": sum(1 for pod in owned if template_labels.items() <= labels_of(pod).items()),
                "readyReplicas": sum(1 for pod in owned if pod_ready_since(pod) is not None),
                "availableReplicas": sum(1 for pod in owned if pod_available(pod, min_ready, now)),
            }
            status: JsonObject = {key: value for key, value in counts.items() if value or key == "replicas"}
            status["observedGeneration"] = metadata(replica_set).get("generation", 1)
            if status != replica_set.get("status"):
                self._registry.write_status(REPLICASETS, {**replica_set, "status": status})

    def _pods_by_owner(self) -> dict[str, list[JsonObject]]:
        owned: dict[str, list[JsonObject]] = {}
        for pod in self._registry.store.list(PODS.qualified):
            owner = owner_of(pod)
            if owner:
                owned.setdefault(owner, []).append(pod)
        return owned

    def _create_pod(self, replica_set: JsonObject) -> None:
        template = (replica_set.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        meta: JsonObject = {
            "generateName": f"{name_of(replica_set)}-",
            "namespace": namespace_of(replica_set),
            "ownerReferences": [controller_reference(replica_set)],
        }
        for key in ("labels", "annotations"):
            if template_meta.get(key):
                meta[key] = dict(template_meta[key])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": deep_copy(template.get("spec") or {})}
        try:
            self._registry.create(PODS, namespace_of(replica_set), pod)
        except ApiError:
            # A template the pod validation rejects leaves the ReplicaSet short, as a real one would be.
            return
