"""What the task types that work on a cluster (K8S, CI) share: finding the task's cluster client, and asking a busy
or unreachable cluster again later instead of failing the task at the first refusal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.endpoints import Endpoint
from orchestrator.errors import ClusterError, DatabaseUnavailable, RollwayError
from orchestrator.retry import Backoff
from workers.cluster import ClusterClient, ClusterClients, ClusterThrottled
from workers.executors.base import Failed, Outcome, Waiting


def cluster_of(
    endpoints: Callable[[str], Endpoint], clusters: ClusterClients, ids: Mapping[str, str], role: str, hint: str
) -> ClusterClient:
    """The client of the endpoint in `role` of a task; a ClusterError saying why there is none (`hint` says where
    the endpoint is named)."""
    endpoint_id = ids.get(role)
    if not endpoint_id:
        raise ClusterError(f"the task names no {role} endpoint ({hint})")
    try:
        endpoint = endpoints(endpoint_id)
    except DatabaseUnavailable:
        raise
    except RollwayError as error:
        raise ClusterError(f"the {role} endpoint {endpoint_id} cannot be used: {error.message}") from error
    return clusters.client(endpoint)


def ask_again(
    backoff: Backoff, now: float, error: ClusterError, state: Mapping[str, Any], memory: dict[str, Any]
) -> Outcome:
    """Ask a busy or unreachable cluster again later, until the retry budget is spent.

    The streak starts at its first failure, whose wall-clock time travels in the state (attempts may run on
    different workers); an attempt that gets its answers (a VERIFY still waiting) hands on no streak.
    """
    first = state.get("failingSince")
    since = now if first is None else float(first)
    retry = int(state.get("retries") or 0) + 1
    retry_after = error.retry_after if isinstance(error, ClusterThrottled) else None
    wait = backoff.wait(retry, now - since, retry_after)
    if wait is None:
        return Failed(f"{error.message} (still failing after {now - since:.0f} s of retries)")
    asked = f" (Retry-After {retry_after:.3g} s)" if retry_after is not None else ""
    message = f"{error.message}; retry {retry} in {wait:.3g} s{asked}"
    return Waiting(wait, {"retries": retry, "failingSince": since, "memory": memory}, message)
