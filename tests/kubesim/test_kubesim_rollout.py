"""The rolling-update arithmetic, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesim.rollout import (
    ReplicaSetState,
    max_unavailable,
    recreate_step,
    resolve_fenceposts,
    rolling_step,
    scaled_value,
)


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [(2, 10, True, 2), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 10, True, 0), ("100%", 3, False, 3)],
)
def test_percentages_round_like_the_controller(value: int | str, total: int, round_up: bool, expected: int) -> None:
    # Given an int-or-percent
    # When it is scaled against a replica count
    # Then surge rounds up and unavailability rounds down
    assert scaled_value(value, total, round_up=round_up) == expected


def test_fenceposts_never_both_zero() -> None:
    # Given maxSurge and maxUnavailable that both round to zero
    # When they are resolved for one replica
    # Then one pod may be unavailable, or the rollout could never move
    assert resolve_fenceposts("25%", "25%", 1) == (1, 0)
    assert resolve_fenceposts(0, "10%", 3) == (0, 1)
    assert max_unavailable(3, "Recreate", 1, 1) == 0
    assert max_unavailable(2, "RollingUpdate", 0, 5) == 2


def test_first_step_surges_the_new_replica_set() -> None:
    # Given three available old pods and an empty new replica set, maxSurge 1 and maxUnavailable 0
    old = ReplicaSetState("old", 3, available=3, pods=3)
    new = ReplicaSetState("new", 0)

    # When one sync runs
    step = rolling_step(3, 1, 0, new, [old])

    # Then only the new replica set grows, by the surge
    assert step == {"new": 1}


def test_old_pods_go_only_when_new_ones_are_available() -> None:
    # Given a surged new pod that is not yet available
    old = ReplicaSetState("old", 3, available=3, pods=3)
    waiting = rolling_step(3, 1, 0, ReplicaSetState("new", 1, available=0, pods=1), [old])

    # When the new pod becomes available
    ready = rolling_step(3, 1, 0, ReplicaSetState("new", 1, available=1, pods=1), [old])

    # Then nothing moves before, and one old pod goes after
    assert waiting == {}
    assert ready == {"old": 2}


def test_unhealthy_old_pods_are_cleaned_up_first() -> None:
    # Given an old replica set whose pods are not available and a healthy new one at full size
    old = ReplicaSetState("old", 2, available=0, pods=2)
    new = ReplicaSetState("new", 3, available=3, pods=3)

    # When one sync runs
    step = rolling_step(3, 1, 0, new, [old])

    # Then the unavailable old pods are removed at once
    assert step == {"old": 0}


def test_recreate_waits_for_old_pods_before_creating() -> None:
    # Given an old replica set still running pods
    old = ReplicaSetState("old", 2, available=2, pods=2)

    # When recreate steps run as the old pods go away
    first = recreate_step(2, None, [old])
    draining = recreate_step(2, None, [ReplicaSetState("old", 0, pods=1)])
    empty = recreate_step(2, None, [ReplicaSetState("old", 0)])
    scaled = recreate_step(2, ReplicaSetState("new", 0), [ReplicaSetState("old", 0)])

    # Then old goes to zero, nothing happens while pods remain, then the new set is created and scaled
    assert first == {"old": 0}
    assert draining == {}
    assert empty is None
    assert scaled == {"new": 2}


int_or_percent = st.one_of(st.integers(0, 4), st.sampled_from(["0%", "10%", "25%", "50%", "100%"]))


@settings(max_examples=150, deadline=None)
@given(
    desired=st.integers(1, 8),
    surge=int_or_percent,
    unavailable=int_or_percent,
    readiness=st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_rollout_bounds_hold_at_every_step(
    desired: int, surge: int | str, unavailable: int | str, readiness: list[bool]
) -> None:
    # Given a fully available old replica set and any strategy parameters
    max_surge, max_down = resolve_fenceposts(surge, unavailable, desired)
    max_down = max_unavailable(desired, "RollingUpdate", surge, unavailable)
    new, old = ReplicaSetState("new", 0), ReplicaSetState("old", desired, desired, desired)

    # When syncs alternate with pods becoming available at arbitrary moments
    for becomes_ready in [*readiness, *([True] * 40)]:
        sizes = rolling_step(desired, surge, unavailable, new, [old])
        new = ReplicaSetState("new", sizes.get("new", new.replicas), new.available, new.pods)
        old_size = sizes.get("old", old.replicas)
        old = ReplicaSetState("old", old_size, min(old.available, old_size), old_size)
        new = ReplicaSetState("new", new.replicas, min(new.available + int(becomes_ready), new.replicas), new.replicas)

        # Then the pod count never exceeds desired + surge, and availability never drops below the minimum
        assert new.replicas + old.replicas <= desired + max_surge
        assert new.available + old.available >= desired - max_down

    # And the rollout completes
    assert (new.replicas, new.available, old.replicas) == (desired, desired, 0)
