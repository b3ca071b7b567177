"""One executor per task type that runs in a worker, registered against its declaration in `tasktypes.py`."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.endpoints import Endpoint
from orchestrator.errors import ConfigurationError
from orchestrator.tasktypes import TASK_TYPES, Runner
from workers.executors.base import Executor
from workers.executors.ci import CiExecutor
from workers.executors.condition import ConditionExecutor
from workers.executors.k8s import K8sExecutor
from workers.executors.metric import MetricExecutor
from workers.executors.poll import PollExecutor
from workers.executors.rest import RestExecutor
from workers.executors.ssh import SshExecutor
from workers.http import HttpClient


def build_executors(http: HttpClient, endpoints: Callable[[str], Endpoint]) -> dict[str, Executor]:
    """The executor of every task type declared to run in a worker; `endpoints` finds an endpoint by id.

    Raises ConfigurationError when the executors and the declarations disagree: a type a worker would be sent
    but could not run, or an executor of a type no pipeline can name.
    """
    executors: dict[str, Executor] = {
        "REST": RestExecutor(http, endpoints),
        "POLL": PollExecutor(http, endpoints),
        "METRIC": MetricExecutor(http),
        "Condition": ConditionExecutor(),
        "K8S": K8sExecutor(endpoints, deny=http.deny),
        "CI": CiExecutor(endpoints),
        "SSH": SshExecutor(endpoints, http.deny),
    }
    declared = {name for name, spec in TASK_TYPES.items() if spec.runs_in is Runner.WORKER}
    if declared != executors.keys():
        raise ConfigurationError(
            f"task types without an executor: {sorted(declared - executors.keys())}; "
            f"executors of undeclared types: {sorted(executors.keys() - declared)}"
        )
    return executors
