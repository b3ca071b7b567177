"""The deployment controller's scaling arithmetic as pure functions: resolving ``maxSurge``/``maxUnavailable``
and deciding, for one sync, the replica count of every ReplicaSet (rolling update and recreate)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaSetState:
    """What the controller knows of one ReplicaSet: its desired size and how many of its pods are up."""

    name: str
    replicas: int  # spec.replicas
    available: int = 0  # status.availableReplicas
    pods: int = 0  # status.replicas: pods that exist


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An int-or-percent against ``total``, rounding as Kubernetes' ``GetScaledValueFromIntOrPercent``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"(\d+)%", value.strip())
    if match is None:
        return int(value) if value.strip().isdigit() else 0
    exact = int(match.group(1)) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None, desired: int) -> tuple[int, int]:
    """``(surge, unavailable)`` for ``desired`` replicas: surge rounds up, unavailable down, never both zero."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        # Both zero would stall a rollout; the real controller allows one unavailable pod.
        unavailable = 1
    return surge, unavailable


def max_unavailable(desired: int, strategy_type: str, max_surge: int | str | None, max_unav: int | str | None) -> int:
    """How many replicas may be unavailable, as the ``Available`` condition counts it."""
    if strategy_type != "RollingUpdate" or desired == 0:
        return 0
    _, unavailable = resolve_fenceposts(max_surge, max_unav, desired)
    return min(unavailable, desired)


def new_replica_set_size(desired: int, surge: int, new: ReplicaSetState, all_sets: Sequence[ReplicaSetState]) -> int:
    """The new ReplicaSet's next size: grow toward ``desired`` without exceeding ``desired + surge`` pods."""
    if new.replicas >= desired:
        return desired
    current = sum(rs.replicas for rs in all_sets)
    ceiling = desired + surge
    if current >= ceiling:
        return new.replicas
    return new.replicas + min(ceiling - current, desired - new.replicas)


def old_replica_set_sizes(
    desired: int, unavailable: int, new: ReplicaSetState | None, olds: Sequence[ReplicaSetState]
) -> dict[str, int]:
    """The old ReplicaSets' next sizes: shrink without dropping below ``desired - unavailable`` available pods.

    ``olds`` must be ordered oldest first. Unhealthy old pods go first, then healthy ones, as in the real
    controller's ``reconcileOldReplicaSets``. Only changed sizes are returned.
    """
    old_total = sum(rs.replicas for rs in olds)
    if old_total == 0:
        return {}
    new_replicas = new.replicas if new else 0
    all_total = old_total + new_replicas
    min_available = desired - unavailable
    new_unavailable = new_replicas - (new.available if new else 0)
    budget = all_total - min_available - new_unavailable
    if budget <= 0:
        return {}
    sizes = {rs.name: rs.replicas for rs in olds}
    cleaned = 0
    for rs in olds:
        # Scaling down pods that are not available costs no availability.
        if cleaned >= budget or rs.replicas == rs.available:
            continue
        drop = min(budget - cleaned, rs.replicas - rs.available)
        sizes[rs.name] -= drop
        cleaned += drop
    available_now = sum(rs.available for rs in olds) + (new.available if new else 0)
    to_scale = max(available_now - min_available, 0)
    scaled = 0
    for rs in olds:
        if scaled >= to_scale or sizes[rs.name] == 0:
            continue
        drop = min(sizes[rs.name], to_scale - scaled)
        sizes[rs.name] -= drop
        scaled += drop
    return {rs.name: sizes[rs.name] for rs in olds if sizes[rs.name] != rs.replicas}


def rolling_step(
    desired: int,
    max_surge: int | str | None,
    max_unav: int | str | None,
    new: ReplicaSetState,
    olds: Sequence[ReplicaSetState],
) -> dict[str, int]:
    """One rolling-update sync: scale the new ReplicaSet up, or failing that the old ones down.

    Returns the ReplicaSets whose ``spec.replicas`` change, with their new sizes.
    """
    surge, _ = resolve_fenceposts(max_surge, max_unav, desired)
    size = new_replica_set_size(desired, surge, new, [new, *olds])
    if size != new.replicas:
        return {new.name: size}
    unavailable = max_unavailable(desired, "RollingUpdate", max_surge, max_unav)
    return old_replica_set_sizes(desired, unavailable, new, olds)


def recreate_step(desired: int, new: ReplicaSetState | None, olds: Sequence[ReplicaSetState]) -> dict[str, int] | None:
    """One recreate sync: old ReplicaSets to zero, wait for their pods to go, then the new one to ``desired``.

    Returns the size changes; ``None`` means the new ReplicaSet must first be created.
    """
    shrink = {rs.name: 0 for rs in olds if rs.replicas > 0}
    if shrink or any(rs.pods > 0 for rs in olds):
        return shrink
    if new is None:
        return None
    return {new.name: desired} if new.replicas != desired else {}
