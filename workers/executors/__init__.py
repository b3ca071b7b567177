"""One executor per task type, and the table that finds the executor of a type."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.endpoints import Endpoint
from workers.executors.base import Executor
from workers.executors.condition import ConditionExecutor
from workers.executors.k8s import K8sExecutor
from workers.executors.metric import MetricExecutor
from workers.executors.poll import PollExecutor
from workers.executors.rest import RestExecutor
from workers.http import HttpClient


def build_executors(http: HttpClient, endpoints: Callable[[str], Endpoint]) -> dict[str, Executor]:
    """The executor of every task type this worker can run; `endpoints` finds an endpoint by id."""
    return {
        "REST": RestExecutor(http, endpoints),
        "POLL": PollExecutor(http, endpoints),
        "METRIC": MetricExecutor(http),
        "Condition": ConditionExecutor(),
        "K8S": K8sExecutor(endpoints),
    }
