"""A Deployment's status as pure functions: replica counts, the ``Available`` and ``Progressing`` conditions with
the real controller's reasons, completeness and the progress deadline."""

from __future__ import annotations

from dataclasses import dataclass

from kubesim.clock import parse_timestamp, timestamp
from kubesim.status import JsonObject

AVAILABLE = "Available"
PROGRESSING = "Progressing"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


@dataclass(frozen=True)
class ReplicaCounts:
    """Sums over a Deployment's ReplicaSets."""

    replicas: int  # pods that exist (sum of status.replicas)
    updated: int  # pods of the new ReplicaSet
    ready: int
    available: int
    wanted: int  # sum of spec.replicas


def condition(kind: str, status: str, reason: str, message: str, now: float) -> JsonObject:
    """A new condition stamped at ``now``."""
    stamp = timestamp(now)
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def get_condition(status: JsonObject, kind: str) -> JsonObject | None:
    """The condition of type ``kind``, if present."""
    for found in status.get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return None


def set_condition(status: JsonObject, new: JsonObject) -> None:
    """``SetDeploymentCondition``: no-op for the same status and reason; keeps the transition time for the same
    status; otherwise the condition moves to the end of the list."""
    current = get_condition(status, new["type"])
    if current is not None and (current["status"], current.get("reason")) == (new["status"], new.get("reason")):
        return
    if current is not None and current["status"] == new["status"]:
        new = {**new, "lastTransitionTime": current["lastTransitionTime"]}
    others = [found for found in status.get("conditions") or [] if found.get("type") != new["type"]]
    status["conditions"] = [*others, new]


def calculate_status(
    previous: JsonObject, counts: ReplicaCounts, *, desired: int, max_unavailable: int, generation: int, now: float
) -> JsonObject:
    """``calculateStatus``: counts, observedGeneration and the ``Available`` condition (zeros omitted as in Go)."""
    status: JsonObject = {"observedGeneration": generation}
    fields = {
        "replicas": counts.replicas,
        "updatedReplicas": counts.updated,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "unavailableReplicas": max(counts.wanted - counts.available, 0),
    }
    status.update({key: value for key, value in fields.items() if value})
    if previous.get("collisionCount") is not None:
        status["collisionCount"] = previous["collisionCount"]
    status["conditions"] = [dict(found) for found in previous.get("conditions") or []]
    if counts.available >= desired - max_unavailable:
        set_condition(status, condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.", now))
    else:
        message = "Deployment does not have minimum availability."
        set_condition(status, condition(AVAILABLE, "False", MIN_UNAVAILABLE, message, now))
    return status


def is_complete(status: JsonObject, desired: int, generation: int) -> bool:
    """``DeploymentComplete``: every replica updated and available, and the latest generation observed."""
    return (
        int(status.get("updatedReplicas") or 0) == desired
        and int(status.get("replicas") or 0) == desired
        and int(status.get("availableReplicas") or 0) == desired
        and int(status.get("observedGeneration") or 0) >= generation
    )


def made_progress(previous: JsonObject, status: JsonObject) -> bool:
    """``DeploymentProgressing``: more updated, ready or available pods, or fewer old ones."""

    def count(source: JsonObject, key: str) -> int:
        return int(source.get(key) or 0)

    old_before = count(previous, "replicas") - count(previous, "updatedReplicas")
    old_after = count(status, "replicas") - count(status, "updatedReplicas")
    return (
        count(status, "updatedReplicas") > count(previous, "updatedReplicas")
        or old_after < old_before
        or count(status, "readyReplicas") > count(previous, "readyReplicas")
        or count(status, "availableReplicas") > count(previous, "availableReplicas")
    )


def timed_out(status: JsonObject, deadline: int | None, now: float) -> bool:
    """``DeploymentTimedOut``: no progress recorded for longer than ``progressDeadlineSeconds``."""
    current = get_condition(status, PROGRESSING)
    if deadline is None or current is None or current.get("reason") == NEW_RS_AVAILABLE:
        return False
    if current.get("reason") == TIMED_OUT:
        return True
    return parse_timestamp(current["lastUpdateTime"]) + deadline < now


def sync_progress(
    previous: JsonObject,
    status: JsonObject,
    *,
    desired: int,
    generation: int,
    deadline: int | None,
    new_rs: str | None,
    now: float,
) -> None:
    """``syncRolloutStatus``: update the ``Progressing`` condition of ``status`` (computed from ``previous``)."""
    current = get_condition(status, PROGRESSING)
    settled = status.get("replicas", 0) == status.get("updatedReplicas", 0) and (
        current is not None and current.get("reason") == NEW_RS_AVAILABLE
    )
    if deadline is None or settled:
        return
    subject = f'ReplicaSet "{new_rs}"' if new_rs else "Deployment"
    if is_complete(status, desired, generation):
        set_condition(
            status, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, f"{subject} has successfully progressed.", now)
        )
    elif made_progress(previous, status):
        update = condition(PROGRESSING, "True", RS_UPDATED, f"{subject} is progressing.", now)
        # Progress refreshes lastUpdateTime even when the reason is unchanged, which restarts the deadline.
        if current is not None and current["status"] == "True":
            update["lastTransitionTime"] = current["lastTransitionTime"]
        status["conditions"] = [*(c for c in status.get("conditions") or [] if c.get("type") != PROGRESSING), update]
    elif timed_out(status, deadline, now):
        set_condition(status, condition(PROGRESSING, "False", TIMED_OUT, f"{subject} has timed out progressing.", now))


def sync_paused(status: JsonObject, paused: bool, deadline: int | None, now: float) -> None:
    """``checkPausedConditions``: mark the ``Progressing`` condition paused or resumed."""
    current = get_condition(status, PROGRESSING)
    if deadline is None or (current is not None and current.get("reason") == TIMED_OUT):
        return
    was_paused = current is not None and current.get("reason") == PAUSED
    if paused and not was_paused:
        set_condition(status, condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now))
    elif not paused and was_paused:
        set_condition(status, condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", now))
