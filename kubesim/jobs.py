"""The simulated Job controller (batch/v1, as Kubernetes 1.20 writes it): run a Job's pods until ``completions`` of
them succeed, or more than ``backoffLimit`` fail, or the Job outlives ``activeDeadlineSeconds``; then write the
``Complete`` or ``Failed`` condition with the ``succeeded``/``failed`` counts and delete the pods still running."""

from __future__ import annotations

from kubesim.clock import Clock, parse_timestamp, timestamp
from kubesim.objects import controller_reference, deep_copy, name_of, namespace_of, nested, uid_of
from kubesim.objects import controller_uid as owner_of
from kubesim.registry import Registry
from kubesim.resources import JOBS, PODS
from kubesim.status import ApiError, JsonObject

BACKOFF_LIMIT = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")
_ENDED = ("Succeeded", "Failed")


def finished(job: JsonObject) -> str | None:
    """``Complete`` or ``Failed`` once the Job has that condition, else None."""
    for condition in nested(job, "status", "conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


class JobController:
    """Creates each Job's pods and writes its status."""

    def __init__(self, registry: Registry, clock: Clock):
        self._registry = registry
        self._clock = clock

    def sync(self) -> None:
        """One pass over every Job."""
        pods: dict[str, list[JsonObject]] = {}
        for pod in self._registry.store.list(PODS.qualified):
            owner = owner_of(pod)
            if owner:
                pods.setdefault(owner, []).append(pod)
        for job in self._registry.store.list(JOBS.qualified):
            if finished(job) is None:
                self._sync(job, pods.get(uid_of(job), []))

    def _sync(self, job: JsonObject, owned: list[JsonObject]) -> None:
        now = self._clock.now()
        spec = job.get("spec") or {}
        status: JsonObject = dict(job.get("status") or {})
        status.setdefault("startTime", timestamp(now))
        active = [pod for pod in owned if nested(pod, "status", "phase") not in _ENDED]
        succeeded = sum(1 for pod in owned if nested(pod, "status", "phase") == "Succeeded")
        failed = sum(1 for pod in owned if nested(pod, "status", "phase") == "Failed")
        ending = _ending(spec, status, succeeded, failed, now)
        if ending is not None:
            for pod in active:
                self._registry.delete(PODS, namespace_of(pod), name_of(pod))
            active = []
            _end(status, ending, now)
        else:
            wanted = min(int(spec.get("parallelism", 1)), int(spec.get("completions") or 1) - succeeded)
            for _ in range(max(wanted - len(active), 0)):
                created = self._create_pod(job)
                if created is not None:
                    active.append(created)
        for key, count in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if count:
                status[key] = count
            else:
                status.pop(key, None)
        if status != job.get("status"):
            self._registry.write_status(JOBS, {**job, "status": status})

    def _create_pod(self, job: JsonObject) -> JsonObject | None:
        template = nested(job, "spec", "template") or {}
        template_meta = template.get("metadata") or {}
        meta: JsonObject = {
            "generateName": f"{name_of(job)}-",
            "namespace": namespace_of(job),
            "ownerReferences": [controller_reference(job)],
        }
        for key in ("labels", "annotations"):
            if template_meta.get(key):
                meta[key] = dict(template_meta[key])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": deep_copy(template.get("spec") or {})}
        try:
            return self._registry.create(PODS, namespace_of(job), pod)
        except ApiError:
            return None  # a template the pod validation rejects creates nothing, as on a real cluster


def _ending(spec: JsonObject, status: JsonObject, succeeded: int, failed: int, now: float) -> tuple[str, ...] | None:
    """How a Job ends now, as (condition, reason, message), or None while it runs on."""
    deadline = spec.get("activeDeadlineSeconds")
    if failed > int(spec.get("backoffLimit", 6)):
        return ("Failed", *BACKOFF_LIMIT)
    if isinstance(deadline, int) and now >= parse_timestamp(status["startTime"]) + deadline:
        return ("Failed", *DEADLINE)
    if succeeded >= int(spec.get("completions") or 1):
        return ("Complete",)
    return None


def _end(status: JsonObject, ending: tuple[str, ...], now: float) -> None:
    """Write a Job's final condition (and completion time) into its status."""
    condition: JsonObject = {"type": ending[0], "status": "True", "lastProbeTime": timestamp(now)}
    condition["lastTransitionTime"] = timestamp(now)
    if len(ending) == 3:
        condition.update(reason=ending[1], message=ending[2])
    status["conditions"] = [*(status.get("conditions") or []), condition]
    if ending[0] == "Complete":
        status["completionTime"] = timestamp(now)
