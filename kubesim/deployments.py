"""The simulated Deployment controller: ReplicaSets per pod template with revisions, rolling and recreate
rollouts, pausing, history pruning and the Deployment's status."""

from __future__ import annotations

from typing import Any

from kubesim import progress
from kubesim.clock import Clock
from kubesim.objects import (
    annotations_of,
    controller_reference,
    controller_uid,
    deep_copy,
    metadata,
    name_of,
    namespace_of,
    nested,
    uid_of,
)
from kubesim.registry import Registry
from kubesim.resources import DEPLOYMENTS, REPLICASETS
from kubesim.rollout import ReplicaSetState, max_unavailable, recreate_step, resolve_fenceposts, rolling_step
from kubesim.rollout import new_replica_set_size as first_size
from kubesim.status import AlreadyExists, JsonObject
from kubesim.templates import HASH_LABEL, equal_ignoring_hash, template_hash

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations that are not copied onto ReplicaSets (and survive a rollback on the Deployment).
SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)


def revision_of(obj: JsonObject) -> int:
    """The ``deployment.kubernetes.io/revision`` of a ReplicaSet (0 when absent or unparsable)."""
    value = annotations_of(obj).get(REVISION, "0")
    return int(value) if str(value).isdigit() else 0


def _state(replica_set: JsonObject) -> ReplicaSetState:
    status = replica_set.get("status") or {}
    return ReplicaSetState(
        name_of(replica_set),
        int(nested(replica_set, "spec", "replicas") or 0),
        int(status.get("availableReplicas") or 0),
        int(status.get("replicas") or 0),
    )


class _View:
    """One Deployment's spec read once per sync."""

    def __init__(self, deployment: JsonObject):
        self.obj = deployment
        spec = deployment.get("spec") or {}
        self.desired = int(spec.get("replicas") or 0)
        self.paused = bool(spec.get("paused"))
        strategy = spec.get("strategy") or {}
        self.strategy = str(strategy.get("type") or "RollingUpdate")
        rolling = strategy.get("rollingUpdate") or {}
        self.max_surge: Any = rolling.get("maxSurge")
        self.max_unavailable: Any = rolling.get("maxUnavailable")
        deadline = spec.get("progressDeadlineSeconds")
        self.deadline: int | None = None if deadline in (None, 2**31 - 1) else int(deadline)
        self.history_limit = spec.get("revisionHistoryLimit")
        self.generation = int(metadata(deployment).get("generation") or 1)

    def surge(self) -> int:
        if self.strategy != "RollingUpdate":
            return 0
        return resolve_fenceposts(self.max_surge, self.max_unavailable, self.desired)[0]

    def unavailable(self) -> int:
        return max_unavailable(self.desired, self.strategy, self.max_surge, self.max_unavailable)


class DeploymentController:
    """Reconciles every Deployment's ReplicaSets, then reports the Deployment's status."""

    def __init__(self, registry: Registry, clock: Clock):
        self._registry = registry
        self._clock = clock
        self._created: dict[str, str] = {}  # deployment uid -> ReplicaSet created since the last status sync

    def reconcile(self) -> None:
        """One sync of every Deployment's ReplicaSets."""
        for deployment in self._registry.store.list(DEPLOYMENTS.qualified):
            self._reconcile(_View(deployment))

    def sync_status(self) -> None:
        """Write every Deployment's status and revision annotation when they changed."""
        now = self._clock.now()
        for deployment in self._registry.store.list(DEPLOYMENTS.qualified):
            self._sync_status(_View(deployment), now)

    def replica_sets(self, deployment: JsonObject) -> list[JsonObject]:
        """The ReplicaSets this Deployment controls, oldest first."""
        owned = [
            rs
            for rs in self._registry.store.list(REPLICASETS.qualified, namespace_of(deployment))
            if controller_uid(rs) == uid_of(deployment)
        ]
        return sorted(owned, key=lambda rs: (metadata(rs).get("creationTimestamp") or "", name_of(rs)))

    def _split(self, view: _View) -> tuple[JsonObject | None, list[JsonObject]]:
        sets = self.replica_sets(view.obj)
        template = nested(view.obj, "spec", "template")
        new = next((rs for rs in sets if equal_ignoring_hash(nested(rs, "spec", "template"), template)), None)
        return new, [rs for rs in sets if rs is not new]

    def _reconcile(self, view: _View) -> None:
        new, olds = self._split(view)
        if view.paused:
            self._scale_paused(view, new, olds)
            return
        if view.strategy == "Recreate":
            steps = recreate_step(view.desired, _state(new) if new else None, [_state(rs) for rs in olds])
            if steps is None:
                self._create(view, olds, view.desired)
                return
        else:
            if new is None:
                size = first_size(view.desired, view.surge(), ReplicaSetState("", 0), [_state(rs) for rs in olds])
                self._create(view, olds, size)
                return
            steps = rolling_step(
                view.desired, view.max_surge, view.max_unavailable, _state(new), [_state(rs) for rs in olds]
            )
        if new is not None:
            new = self._restamp(view, new, olds)
        self._apply(view, ([new] if new else []) + olds, steps)
        if (
            not steps
            and new is not None
            and progress.is_complete(view.obj.get("status") or {}, view.desired, view.generation)
        ):
            self._prune(view, olds)

    def _scale_paused(self, view: _View, new: JsonObject | None, olds: list[JsonObject]) -> None:
        """``sync`` for a paused Deployment: a lone active ReplicaSet follows ``spec.replicas``; no rollout."""
        everything = ([new] if new else []) + olds
        active = [rs for rs in everything if int(nested(rs, "spec", "replicas") or 0) > 0]
        target: JsonObject | None = None
        if len(active) == 1:
            target = active[0]
        elif not active:
            target = new or (olds[-1] if olds else None)
        if target is not None:
            self._apply(view, everything, {name_of(target): view.desired})

    def _create(self, view: _View, olds: list[JsonObject], replicas: int) -> None:
        deployment = view.obj
        template = deep_copy(nested(deployment, "spec", "template") or {})
        for collisions in range(10):
            pod_hash = template_hash(template, collisions)
            try:
                created = self._registry.create(
                    REPLICASETS, namespace_of(deployment), self._new_set(view, olds, template, pod_hash, replicas)
                )
            except AlreadyExists:
                continue
            self._created[uid_of(deployment)] = name_of(created)
            return

    def _new_set(
        self, view: _View, olds: list[JsonObject], template: JsonObject, pod_hash: str, replicas: int
    ) -> JsonObject:
        deployment = view.obj
        template = deep_copy(template)
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), HASH_LABEL: pod_hash}
        selector = deep_copy(nested(deployment, "spec", "selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: pod_hash}
        notes = {key: value for key, value in annotations_of(deployment).items() if key not in SKIPPED_ANNOTATIONS}
        notes.update(
            {
                REVISION: str(max((revision_of(rs) for rs in olds), default=0) + 1),
                DESIRED_REPLICAS: str(view.desired),
                MAX_REPLICAS: str(view.desired + view.surge()),
            }
        )
        spec: JsonObject = {"replicas": replicas, "selector": selector, "template": template}
        if nested(deployment, "spec", "minReadySeconds"):
            spec["minReadySeconds"] = nested(deployment, "spec", "minReadySeconds")
        meta = {
            "name": f"{name_of(deployment)}-{pod_hash}",
            "namespace": namespace_of(deployment),
            "labels": dict(template_meta["labels"]),
            "annotations": notes,
            "ownerReferences": [controller_reference(deployment)],
        }
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta, "spec": spec}

    def _restamp(self, view: _View, new: JsonObject, olds: list[JsonObject]) -> JsonObject:
        """``SetNewReplicaSetAnnotations``: copy the Deployment's annotations and give the new ReplicaSet the next
        revision; a ReplicaSet brought back by a rollback keeps its former revisions in ``revision-history``."""
        updated = deep_copy(new)
        notes = metadata(updated).setdefault("annotations", {})
        for key, value in annotations_of(view.obj).items():
            if key not in SKIPPED_ANNOTATIONS:
                notes[key] = value
        wanted = max((revision_of(rs) for rs in olds), default=0) + 1
        current = revision_of(new)
        if current < wanted:
            notes[REVISION] = str(wanted)
            if current:
                history = [item for item in notes.get(REVISION_HISTORY, "").split(",") if item]
                notes[REVISION_HISTORY] = ",".join([*history, str(current)])
        min_ready = nested(view.obj, "spec", "minReadySeconds")
        if min_ready != nested(updated, "spec", "minReadySeconds"):
            updated["spec"]["minReadySeconds"] = min_ready
        if updated == new:
            return new
        return self._registry.update(REPLICASETS, namespace_of(new), name_of(new), updated)

    def _apply(self, view: _View, sets: list[JsonObject], sizes: dict[str, int]) -> None:
        """Scale ReplicaSets to ``sizes``, stamping the replica annotations as the real controller does."""
        for replica_set in sets:
            size = sizes.get(name_of(replica_set))
            if size is None:
                continue
            updated = deep_copy(replica_set)
            updated["spec"]["replicas"] = size
            notes = metadata(updated).setdefault("annotations", {})
            notes[DESIRED_REPLICAS] = str(view.desired)
            notes[MAX_REPLICAS] = str(view.desired + view.surge())
            self._registry.update(REPLICASETS, namespace_of(replica_set), name_of(replica_set), updated)

    def _prune(self, view: _View, olds: list[JsonObject]) -> None:
        """``cleanupDeployment``: delete the oldest idle ReplicaSets beyond ``revisionHistoryLimit``."""
        if view.history_limit is None:
            return
        excess = len(olds) - int(view.history_limit)
        for replica_set in sorted(olds, key=revision_of)[: max(excess, 0)]:
            status = replica_set.get("status") or {}
            idle = not status.get("replicas") and not nested(replica_set, "spec", "replicas")
            observed = int(status.get("observedGeneration") or 0) >= int(metadata(replica_set).get("generation") or 1)
            if idle and observed:
                self._registry.delete(REPLICASETS, namespace_of(replica_set), name_of(replica_set))

    def _sync_status(self, view: _View, now: float) -> None:
        deployment = view.obj
        new, olds = self._split(view)
        previous = deep_copy(deployment.get("status") or {})
        created = self._created.pop(uid_of(deployment), None)
        if created is not None:
            message = f'Created new replica set "{created}"'
            progress.set_condition(
                previous, progress.condition(progress.PROGRESSING, "True", progress.NEW_RS_CREATED, message, now)
            )
        elif (
            new is not None
            and view.deadline is not None
            and progress.get_condition(previous, progress.PROGRESSING) is None
        ):
            message = f'Found new replica set "{name_of(new)}"'
            progress.set_condition(
                previous, progress.condition(progress.PROGRESSING, "True", progress.FOUND_NEW_RS, message, now)
            )
        sets = ([new] if new else []) + olds
        counts = progress.ReplicaCounts(
            replicas=sum(int(nested(rs, "status", "replicas") or 0) for rs in sets),
            updated=int(nested(new, "status", "replicas") or 0) if new else 0,
            ready=sum(int(nested(rs, "status", "readyReplicas") or 0) for rs in sets),
            available=sum(int(nested(rs, "status", "availableReplicas") or 0) for rs in sets),
            wanted=sum(int(nested(rs, "spec", "replicas") or 0) for rs in sets),
        )
        status = progress.calculate_status(
            previous,
            counts,
            desired=view.desired,
            max_unavailable=view.unavailable(),
            generation=view.generation,
            now=now,
        )
        progress.sync_paused(status, view.paused, view.deadline, now)
        if not view.paused:
            progress.sync_progress(
                previous,
                status,
                desired=view.desired,
                generation=view.generation,
                deadline=view.deadline,
                new_rs=name_of(new) if new else None,
                now=now,
            )
        updated = deep_copy(deployment)
        updated["status"] = status
        if new is not None and annotations_of(new).get(REVISION):
            metadata(updated).setdefault("annotations", {})[REVISION] = annotations_of(new)[REVISION]
        if updated != deployment:
            self._registry.write_status(DEPLOYMENTS, updated)
