"""The CI task: its steps run in the pipeline workspace's image, as a Kubernetes Job on the workspace's endpoint.

The first attempt creates the Secret holding the script and the Job running it (see `orchestrator/cijob.py`);
every attempt then reads the Job and, while it runs, answers Waiting with a short countdown, like a K8S VERIFY.
An attempt that was lost or retried finds the Job by its name (the task run's) and waits on it rather than
starting a second one. When the Job ends, its pod's log gives the exported values and the log's tail: Complete
succeeds with them, Failed fails the task (so its rollback runs) naming the Job, the pod's exit and the log.

Output: `exports` (each exported name and its value), `artifacts` (the paths the task lists), `jobName`,
`namespace`, `pod`, `logs` (the tail of what the steps printed). Bind an export as
`${Stage.Task.output.exports.NAME}`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator import cijob
from orchestrator.endpoints import Endpoint
from orchestrator.errors import ClusterBusy, ClusterError, ClusterUnreachable, DatabaseUnavailable, RollwayError
from orchestrator.retry import RETRY_BUDGET, Backoff
from orchestrator.rollout import pod_problems
from orchestrator.workspace import WORKSPACE_ROLE
from workers.cluster import ClusterClient, ClusterClients, ObjectRef
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall, Waiting
from workers.executors.clusterwork import ask_again, cluster_of

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between looks at a running Job


class CiExecutor:
    """Runs CI tasks as Jobs on the endpoint in the task's `workspace` role."""

    def __init__(
        self,
        endpoints: Callable[[str], Endpoint],
        *,
        clusters: ClusterClients | None = None,
        budget: float = RETRY_BUDGET,
        interval: float = POLL_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = endpoints
        self.clusters = clusters or ClusterClients()
        self.backoff = Backoff(budget=budget)
        self.interval = interval
        self.clock = clock

    def execute(self, call: TaskCall) -> Outcome:
        names = cijob.RunNames(call.run_id, call.execution_id, call.pipeline, call.stage, call.task)
        try:
            plan = cijob.plan(call.input, names)
        except ValueError as error:
            return Failed(str(error))
        memory: dict[str, Any] = copy.deepcopy(dict(call.state.get("memory") or {}))
        try:
            hint = "the pipeline's workspace.endpoint"
            cluster = cluster_of(self.endpoints, self.clusters, call.endpoints, WORKSPACE_ROLE, hint)
            return self._run(plan, cluster, memory)
        except (ClusterBusy, ClusterUnreachable) as error:
            return ask_again(self.backoff, self.clock(), error, call.state, memory)
        except DatabaseUnavailable:
            raise
        except RollwayError as error:
            return Failed(error.message)
        except Exception as error:  # a client bug or an odd answer must fail the task, not the worker
            log.exception("CI job %s failed unexpectedly", plan.name)
            return Failed(f"CI job {plan.name} failed unexpectedly: {type(error).__name__}: {error}")

    def _run(self, plan: cijob.JobPlan, cluster: ClusterClient, memory: dict[str, Any]) -> Outcome:
        job = self._job(plan, cluster, memory)
        state = cijob.job_state(job)
        pods = cluster.pods(job)
        if state.ended is None:
            problems = pod_problems(pods)
            said = f"; {'; '.join(problems)}" if problems else ""
            message = f"job {plan.namespace}/{plan.name} running: {state.message}{said}"
            return Waiting(self.interval, {"retries": 0, "memory": memory}, message)
        pod = cijob.latest_pod(pods)
        pod_name = "" if pod is None else str((pod.get("metadata") or {}).get("name") or "")
        # Export lines come last: read enough beyond the tail kept to find them all.
        lines = cijob.LOG_TAIL_LINES + len(plan.exports)
        printed = cijob.read_log(cluster.pod_log(plan.namespace, pod_name, lines) if pod_name else "", plan.exports)
        output = {
            "jobName": plan.name,
            "namespace": plan.namespace,
            "pod": pod_name,
            "exports": printed.exports,
            "artifacts": list(plan.artifacts),
            "logs": printed.tail,
        }
        if state.ended == "Complete":
            return Succeeded(output)
        pod_said = "no pod ran" if pod is None else cijob.pod_message(pod)
        logs = f"; log tail: {printed.tail[-500:]}" if printed.tail else "; the pod printed nothing"
        return Failed(f"CI job {plan.namespace}/{plan.name} failed ({state.message}); {pod_said}{logs}", output)

    def _job(self, plan: cijob.JobPlan, cluster: ClusterClient, memory: dict[str, Any]) -> dict[str, Any]:
        """The run's Job: found by its name when an earlier attempt made it, else made now with its Secret."""
        job_ref = cluster.ref_of(plan.job)
        secret_ref = cluster.ref_of(plan.secret)
        job = cluster.read(job_ref)
        if job is None:
            self._check_ours(secret_ref, self._create(cluster, secret_ref, plan.secret), plan)
            job = self._create(cluster, job_ref, plan.job)
            memory["created"] = True
        self._check_ours(job_ref, job, plan)
        if not memory.get("secretOwned"):
            # The Secret goes with its Job (the cluster's garbage collector), also when an attempt was lost between
            # making the two.
            secret = cluster.read(secret_ref)
            if secret is not None and not (secret.get("metadata") or {}).get("ownerReferences"):
                owner = {"apiVersion": "batch/v1", "kind": "Job", "name": plan.name, "uid": job["metadata"]["uid"]}
                cluster.json_patch(secret_ref, [{"op": "add", "path": "/metadata/ownerReferences", "value": [owner]}])
            memory["secretOwned"] = True
        return job

    @staticmethod
    def _create(cluster: ClusterClient, ref: ObjectRef, document: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return cluster.create(ref, document)
        except ClusterError as error:
            if error.reason != "AlreadyExists":
                raise
            return cluster.get(ref)  # made by an attempt of this run that was lost: checked as ours by the caller

    @staticmethod
    def _check_ours(ref: ObjectRef, obj: Mapping[str, Any], plan: cijob.JobPlan) -> None:
        """A Job or Secret of this name that another run (or someone else) made is not this task's to use."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(cijob.LABEL_RUN) != plan.labels.get(cijob.LABEL_RUN):
            raise ClusterError(f"{ref} exists and was not made by this task run: refusing to use it", 409, "Conflict")
