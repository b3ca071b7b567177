"""Deployment rollouts as pure decisions over Kubernetes objects held as plain dicts.

What `kubectl rollout status` and `kubectl rollout undo` decide, without their I/O: whether a rollout is complete,
still in progress or past its progress deadline; which ReplicaSet revision an undo goes back to and the JSON patch
that does it; and the small readings the K8S task reports (a Deployment's image and revision).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.errors import ClusterError

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
PROGRESSING = "Progressing"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
# The Deployment annotations an undo keeps from the Deployment rather than copying them from the ReplicaSet
# (kubectl's `annotationsToSkip`): they describe the Deployment's own history, not the template's.
KEPT_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
# Waiting reasons every healthy pod goes through: not worth naming when a rollout fails.
_ROUTINE_WAITING = frozenset({"ContainerCreating", "PodInitializing"})
_REPLICA_SET_IN_MESSAGE = re.compile(r'ReplicaSet "([^"]+)"')

Obj = Mapping[str, Any]


def _at(obj: Any, *path: str) -> Any:
    """The value at `path` in nested mappings, or None when a step is missing."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _count(obj: Obj, *path: str) -> int:
    value = _at(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def name_of(obj: Obj) -> str:
    """`metadata.name`, or "" when absent."""
    return str(_at(obj, "metadata", "name") or "")


def revision_of(obj: Obj) -> str:
    """The `deployment.kubernetes.io/revision` annotation of a Deployment or ReplicaSet, or "" when absent."""
    return str(_at(obj, "metadata", "annotations", REVISION) or "")


def revision_number(obj: Obj) -> int | None:
    """The revision annotation as a number, or None when absent or not a number."""
    text = revision_of(obj)
    return int(text) if text.isdigit() else None


def containers_of(obj: Obj) -> list[Obj]:
    """The containers of a Deployment's or ReplicaSet's pod template, or of a Pod."""
    found = _at(obj, "spec", "template", "spec", "containers")
    if found is None:
        found = _at(obj, "spec", "containers")
    return [item for item in found or [] if isinstance(item, Mapping)]


def image_of(obj: Obj, container: str | None = None) -> str:
    """The image of the first container (or of the container named `container`), or "" when there is none."""
    for item in containers_of(obj):
        if container is None or item.get("name") == container:
            return str(item.get("image") or "")
    return ""


def _pruned(value: Any) -> Any:
    """`value` without nulls, empty maps and empty lists: an API server writes unset fields either way."""
    if isinstance(value, Mapping):
        items = {key: _pruned(item) for key, item in value.items()}
        return {key: item for key, item in items.items() if item not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def template_without_hash(template: Any) -> dict[str, Any]:
    """A pod template without the `pod-template-hash` label the deployment controller adds to ReplicaSets."""
    clean: dict[str, Any] = dict(template) if isinstance(template, Mapping) else {}
    meta = clean.get("metadata")
    if isinstance(meta, Mapping) and isinstance(meta.get("labels"), Mapping) and HASH_LABEL in meta["labels"]:
        labels = {key: value for key, value in meta["labels"].items() if key != HASH_LABEL}
        clean["metadata"] = {**meta, "labels": labels}
    return clean


def same_template(first: Any, second: Any) -> bool:
    """Whether two pod templates are the same once the hash label and unset fields are ignored."""
    return bool(_pruned(template_without_hash(first)) == _pruned(template_without_hash(second)))


def owned_by(deployment: Obj, objects: Iterable[Obj]) -> list[Obj]:
    """The objects (ReplicaSets) whose controller owner reference is `deployment`."""
    uid = _at(deployment, "metadata", "uid")
    return [
        obj
        for obj in objects
        if any(
            isinstance(ref, Mapping) and ref.get("controller") and ref.get("uid") == uid
            for ref in _at(obj, "metadata", "ownerReferences") or []
        )
    ]


def current_replica_set(deployment: Obj, replica_sets: Iterable[Obj]) -> Obj | None:
    """The ReplicaSet that runs the Deployment's current pod template, if the controller has made it yet."""
    template = _at(deployment, "spec", "template")
    return next(
        (rs for rs in owned_by(deployment, replica_sets) if same_template(_at(rs, "spec", "template"), template)), None
    )


# --- kubectl rollout status ---------------------------------------------------------------------------------------


class Phase(StrEnum):
    """Where a rollout stands."""

    COMPLETE = "complete"
    PROGRESSING = "progressing"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutStatus:
    """A rollout's phase with the line `kubectl rollout status` would print."""

    phase: Phase
    message: str

    @property
    def complete(self) -> bool:
        return self.phase is Phase.COMPLETE

    @property
    def failed(self) -> bool:
        return self.phase is Phase.FAILED


def deadline_condition(deployment: Obj) -> Obj | None:
    """The `Progressing` condition when its reason is ProgressDeadlineExceeded, else None."""
    for condition in _at(deployment, "status", "conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == PROGRESSING:
            return condition if condition.get("reason") == DEADLINE_EXCEEDED else None
    return None


def _deadline_is_stale(deployment: Obj, condition: Obj, replica_sets: Sequence[Obj] | None) -> bool:
    """Whether the deadline was exceeded by a ReplicaSet the Deployment has since moved away from.

    After an undo of a timed-out rollout the controller keeps the old condition until the restored ReplicaSet
    makes progress; kubectl then reports a failure that is already over. The condition's message names the
    ReplicaSet ("ReplicaSet "web-5d4f" has timed out progressing."), which tells the two apart.
    """
    if replica_sets is None:
        return False
    named = _REPLICA_SET_IN_MESSAGE.search(str(condition.get("message") or ""))
    current = current_replica_set(deployment, replica_sets)
    return named is not None and current is not None and named.group(1) != name_of(current)


def rollout_status(
    deployment: Obj, replica_sets: Sequence[Obj] | None = None, revision: int | None = None
) -> RolloutStatus:
    """Whether a Deployment's rollout is complete, in progress or failed, as `kubectl rollout status` says.

    Complete when the latest generation is observed and the updated, available and total replica counts all equal
    `spec.replicas`. Failed when the `Progressing` condition says ProgressDeadlineExceeded, unless `replica_sets`
    (the Deployment's) show that the condition is about a ReplicaSet the Deployment no longer runs.

    With `replica_sets`, the Deployment's status is not taken on trust: the rollout is complete only once
    `replica_set_status` finds the ReplicaSet of the current template (at `revision`, when given) fully available.
    """
    status = _deployment_status(deployment, replica_sets)
    if status.complete and replica_sets is not None:
        return replica_set_status(deployment, replica_sets, revision) or status
    return status


def _deployment_status(deployment: Obj, replica_sets: Sequence[Obj] | None) -> RolloutStatus:
    """What the Deployment's own status says, as kubectl reads it."""
    name = name_of(deployment)
    generation = _count(deployment, "metadata", "generation")
    if _count(deployment, "status", "observedGeneration") < generation:
        return RolloutStatus(Phase.PROGRESSING, f'Waiting for deployment "{name}" spec update to be observed...')
    condition = deadline_condition(deployment)
    if condition is not None and not _deadline_is_stale(deployment, condition, replica_sets):
        detail = f": {condition['message']}" if condition.get("message") else ""
        return RolloutStatus(Phase.FAILED, f'deployment "{name}" exceeded its progress deadline{detail}')
    replicas = _at(deployment, "spec", "replicas")
    desired = replicas if isinstance(replicas, int) else 1
    total = _count(deployment, "status", "replicas")
    updated = _count(deployment, "status", "updatedReplicas")
    available = _count(deployment, "status", "availableReplicas")
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < desired:
        return RolloutStatus(
            Phase.PROGRESSING, f"{waiting}{updated} out of {desired} new replicas have been updated..."
        )
    if total > updated:
        return RolloutStatus(Phase.PROGRESSING, f"{waiting}{total - updated} old replicas are pending termination...")
    if available < updated:
        return RolloutStatus(Phase.PROGRESSING, f"{waiting}{available} of {updated} updated replicas are available...")
    if not total == updated == available == desired:
        return RolloutStatus(Phase.PROGRESSING, f"{waiting}{total} replicas are running where {desired} are wanted...")
    return RolloutStatus(Phase.COMPLETE, f'deployment "{name}" successfully rolled out')


def replica_set_status(
    deployment: Obj, replica_sets: Sequence[Obj], revision: int | None = None
) -> RolloutStatus | None:
    """Why the ReplicaSets do not yet back a complete rollout of the Deployment's current pod template, or None.

    A Deployment's status can look complete while the new template has not run at all: a server that answers a
    stale `metadata.generation` makes the previous rollout's counts look current. The ReplicaSets tell the truth:
    one must run exactly the Deployment's template, carry the Deployment's revision (and `revision`, the one a task
    deployed, when given), have every desired replica created and available, and the others none left.
    """
    name = name_of(deployment)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    current = current_replica_set(deployment, replica_sets)
    if current is None:
        return RolloutStatus(Phase.PROGRESSING, f"{waiting}no ReplicaSet runs the current pod template yet...")
    rs_name, rs_revision = name_of(current), revision_number(current)
    if revision is not None and rs_revision is not None and rs_revision > revision:
        return RolloutStatus(
            Phase.FAILED,
            f'deployment "{name}" has moved on to revision {rs_revision} (ReplicaSet {rs_name}) '
            f"since revision {revision} was deployed",
        )
    wanted = str(revision) if revision is not None else revision_of(deployment)
    if revision_of(current) != wanted or revision_of(deployment) != revision_of(current):
        return RolloutStatus(
            Phase.PROGRESSING,
            f"{waiting}ReplicaSet {rs_name} is at revision {revision_of(current) or 'none'}, "
            f"waiting for revision {wanted or 'none'}...",
        )
    replicas = _at(deployment, "spec", "replicas")
    desired = replicas if isinstance(replicas, int) else 1
    stale = _count(current, "status", "observedGeneration") < _count(current, "metadata", "generation")
    created, available = _count(current, "status", "replicas"), _count(current, "status", "availableReplicas")
    if stale or _count(current, "spec", "replicas") != desired or created != desired or available < desired:
        return RolloutStatus(
            Phase.PROGRESSING, f"{waiting}{available} of {desired} pods of ReplicaSet {rs_name} are available..."
        )
    old = sum(_count(rs, "status", "replicas") for rs in owned_by(deployment, replica_sets) if rs is not current)
    if old:
        return RolloutStatus(Phase.PROGRESSING, f"{waiting}{old} old replicas are pending termination...")
    return None


def pod_problems(pods: Iterable[Obj]) -> list[str]:
    """Why a rollout's pods are not running, one line per distinct reason: 'ImagePullBackOff: ... (2 pods)'."""
    counts: dict[str, int] = {}
    for pod in pods:
        statuses = [
            *(_at(pod, "status", "initContainerStatuses") or []),
            *(_at(pod, "status", "containerStatuses") or []),
        ]
        for status in statuses:
            waiting = _at(status, "state", "waiting")
            reason = str(_at(waiting, "reason") or "")
            if not reason or reason in _ROUTINE_WAITING:
                continue
            message = str(_at(waiting, "message") or "")
            line = f"{reason}: {message}" if message else reason
            counts[line] = counts.get(line, 0) + 1
    return [f"{line} ({count} pod{'s' if count > 1 else ''})" for line, count in counts.items()]


# --- kubectl rollout undo -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UndoPlan:
    """What an undo does: the revision and ReplicaSet it goes back to, the JSON patch (None: nothing to do), and
    the revision the Deployment runs as afterwards (the controller renumbers a restored ReplicaSet to the newest)."""

    revision: int
    replica_set: str
    image: str
    patch: list[dict[str, Any]] | None
    revision_after: str = ""

    @property
    def needed(self) -> bool:
        return self.patch is not None

    @property
    def message(self) -> str:
        if self.needed:
            return f"rolled back to revision {self.revision} (ReplicaSet {self.replica_set}, image {self.image})"
        return f"skipped rollback (current template already matches revision {self.revision})"


def _revisions(deployment: Obj, replica_sets: Iterable[Obj]) -> list[tuple[int, Obj]]:
    """The Deployment's ReplicaSets that carry a revision, newest first."""
    numbered = [(revision_number(rs), rs) for rs in owned_by(deployment, replica_sets)]
    return sorted(((number, rs) for number, rs in numbered if number is not None), key=lambda item: -item[0])


def undo_target(deployment: Obj, replica_sets: Iterable[Obj], revision: int | None = None) -> tuple[int, Obj]:
    """The revision an undo goes back to and its ReplicaSet: `revision`, or else the previous one.

    The previous revision is the second newest of the Deployment's ReplicaSets, as kubectl picks it. Raises
    ClusterError when `revision` is not in the history, or when there is no previous revision to go back to.
    """
    name = name_of(deployment)
    history = _revisions(deployment, replica_sets)
    if revision is not None:
        for number, replica_set in history:
            if number == revision:
                return number, replica_set
        known = ", ".join(str(number) for number, _ in reversed(history)) or "none"
        raise ClusterError(
            f'deployment "{name}" has no revision {revision} in its history (revisions: {known})',
            reason="RevisionNotFound",
        )
    if len(history) < 2:
        raise ClusterError(
            f'no rollout history found for deployment "{name}": no previous revision to go back to',
            reason="NoRolloutHistory",
        )
    return history[1]


def undo_patch(deployment: Obj, replica_set: Obj) -> list[dict[str, Any]]:
    """The JSON patch `kubectl rollout undo` sends: the ReplicaSet's template without its hash label, and the
    ReplicaSet's annotations with the Deployment's own history annotations kept."""
    current: Mapping[str, Any] = _at(deployment, "metadata", "annotations") or {}
    annotations = {key: value for key, value in current.items() if key in KEPT_ANNOTATIONS}
    annotations.update(
        {
            key: value
            for key, value in (_at(replica_set, "metadata", "annotations") or {}).items()
            if key not in KEPT_ANNOTATIONS
        }
    )
    # RFC 6902 `replace` needs the member to exist; `add` sets it either way.
    verb = "replace" if _at(deployment, "metadata", "annotations") is not None else "add"
    return [
        {
            "op": "replace",
            "path": "/spec/template",
            "value": template_without_hash(_at(replica_set, "spec", "template")),
        },
        {"op": verb, "path": "/metadata/annotations", "value": annotations},
    ]


def plan_undo(
    deployment: Obj, replica_sets: Iterable[Obj], revision: int | None = None, replica_set: str | None = None
) -> UndoPlan:
    """The undo of a Deployment to `revision` (default: the previous one), or to the ReplicaSet named `replica_set`.

    Naming the ReplicaSet lets a retried undo go back to the same template even though the first try already
    renumbered it. The plan has no patch when the Deployment already runs the target template.
    """
    sets = list(replica_sets)
    named = next((rs for rs in owned_by(deployment, sets) if name_of(rs) == replica_set), None) if replica_set else None
    if named is not None:
        number, target = revision_number(named) or 0, named
    else:
        number, target = undo_target(deployment, sets, revision)
    already = same_template(_at(target, "spec", "template"), _at(deployment, "spec", "template"))
    patch = None if already else undo_patch(deployment, target)
    others = [rs for rs in owned_by(deployment, sets) if rs is not target]
    newest_other = int(next_revision(others)) - 1
    after = str(number) if number > newest_other else next_revision(others)
    return UndoPlan(number, name_of(target), image_of(target), patch, after)


def next_revision(replica_sets: Iterable[Obj]) -> str:
    """The revision the deployment controller gives the next template it rolls out: one above the highest."""
    numbers = [number for number in (revision_number(rs) for rs in replica_sets) if number is not None]
    return str(max(numbers, default=0) + 1)
