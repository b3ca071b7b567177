"""The K8S task: GET, CREATE, APPLY or DELETE the objects of a YAML document, and ROLLBACK or VERIFY a Deployment.

Output follows Code Stream: `response.<kind plural>.<name>` holds each object as the cluster returned it, and the
Deployments a task changes report the `previousImage` and `previousRevision` they replaced, so a rollback pipeline
can bind to them. VERIFY never sleeps: it answers Waiting with a short countdown until the rollout completes,
fails, or runs past `timeout`. A busy or unreachable cluster is asked again the same way, with a growing backoff (or
the longer wait its `Retry-After` asks) until the retry budget, two minutes from the first failure, is spent; what
an attempt learned before it failed (a Deployment's image before the change, the objects it created, the
ReplicaSet an undo goes back to) travels in the state, so the retry reports and does the same.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator import gitsource
from orchestrator.endpoints import Endpoint
from orchestrator.errors import ClusterBusy, ClusterError, ClusterUnreachable, DatabaseUnavailable, RollwayError
from orchestrator.fields import bound_number, read_flag
from orchestrator.gitsource import SCM
from orchestrator.manifests import read_objects
from orchestrator.retry import RETRY_BUDGET, Backoff
from orchestrator.rollout import (
    current_replica_set,
    image_of,
    plan_undo,
    pod_problems,
    revision_of,
    rollout_status,
    same_template,
)
from orchestrator.settings import DEFAULT_EGRESS_DENY, Network
from orchestrator.tasktypes import K8S_ACTIONS, K8S_LIMITS, KUBERNETES_SERVER, reads_git
from workers.cluster import ClusterClient, ClusterClients, ObjectRef
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall, Waiting
from workers.executors.clusterwork import ask_again, cluster_of
from workers.gitfetch import DEFAULT_BRANCH, read_file

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0
VERIFY_INTERVAL = 1.0

Doc = dict[str, Any]


@dataclass(frozen=True)
class K8sInput:
    """A K8S task's input, checked and typed.

    `namespace` is the Deployment's for ROLLBACK and VERIFY; for the other actions, where documents name their
    own, it is the namespace of those that do not (default: `default`).
    """

    action: str
    documents: tuple[Doc, ...] = ()
    timeout: float = DEFAULT_TIMEOUT  # seconds a VERIFY may wait for its rollout
    continue_on_conflict: bool = False  # CREATE: an object that exists already is not a failure
    namespace: str = ""
    deployment: str = ""
    # ROLLBACK: the revision to go back to (default: the previous one); VERIFY: the revision a task deployed
    revision: int | None = None

    @classmethod
    def read(cls, task_input: Mapping[str, Any]) -> K8sInput:
        """From a resolved input; raises ValueError naming the first value that cannot be used."""
        action = task_input.get("action")
        if not isinstance(action, str) or action.upper() not in K8S_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(K8S_ACTIONS)}, not {action!r}")
        action = action.upper()
        fields: dict[str, Any] = {
            "timeout": _seconds(task_input.get("timeout")),
            "continue_on_conflict": read_flag("continueOnConflict", task_input.get("continueOnConflict")),
            "revision": _revision(task_input.get("revision")),
        }
        if action in ("ROLLBACK", "VERIFY"):
            for name in ("namespace", "deployment"):
                value = task_input.get(name)
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"{name} must name the Deployment's {name} for {action}, not {value!r}")
                fields[name] = value.strip()
        else:
            fields["documents"] = documents(task_input.get("yaml"))
            # Like `kubectl -n`: the namespace of the documents that name none.
            namespace = task_input.get("namespace")
            fields["namespace"] = namespace.strip() if isinstance(namespace, str) else ""
        return cls(action, **fields)


def _seconds(value: object) -> float:
    # The limits the save-time check holds a written timeout to: a bound one must not wait for ever either.
    seconds = bound_number(K8S_LIMITS["timeout"], "timeout", value)
    return DEFAULT_TIMEOUT if seconds is None else float(seconds)


def _revision(value: object) -> int | None:
    revision = bound_number(K8S_LIMITS["revision"], "revision", value)
    return None if revision is None else int(revision)


def documents(text: object) -> tuple[Doc, ...]:
    """The Kubernetes objects of a multi-document YAML text (empty documents skipped, `List`s unpacked)."""
    objects, problems = read_objects(text, "yaml")
    if problems:
        raise ValueError("; ".join(f"{problem.path} {problem.message}" for problem in problems))
    return tuple(objects)


@dataclass
class Report:
    """The output an action builds up: the objects by kind and name, change lines, and Deployment changes."""

    response: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    deployments: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def put(self, ref: ObjectRef, obj: Mapping[str, Any], change: str | None = None) -> None:
        self.response.setdefault(ref.kind.plural, {})[ref.name] = obj
        if change:
            self.changes.append(f"{ref.kind.kind.lower()}/{ref.name} {change}")

    def output(self) -> dict[str, Any]:
        output: dict[str, Any] = {"response": self.response, **self.extra}
        if self.changes:
            output["changes"] = self.changes
        if self.deployments:
            # The first Deployment's change at top level, where Code Stream's bindings read it; all of them by name.
            output.update(next(iter(self.deployments.values())))
            output["deployments"] = self.deployments
        return output


def _is_deployment(ref: ObjectRef) -> bool:
    return ref.kind.kind == "Deployment" and ref.kind.api_version == "apps/v1"


def _summary(deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a Deployment was before a change, as remembered across attempts."""
    if deployment is None:
        return {"existed": False, "image": "", "revision": "", "template": None}
    template = (deployment.get("spec") or {}).get("template")
    return {"existed": True, "image": image_of(deployment), "revision": revision_of(deployment), "template": template}


def _change(before: Mapping[str, Any], after: Mapping[str, Any], revision: str) -> dict[str, str]:
    return {
        "previousImage": before["image"],
        "previousRevision": before["revision"],
        "revision": revision,
        "image": image_of(after),
    }


def _revision_after(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """The revision a Deployment runs after an apply: 1 when new, one more when its pod template changed."""
    if not before["existed"]:
        return "1"
    if same_template(before["template"], (after.get("spec") or {}).get("template")):
        return revision_of(after) or before["revision"]
    previous = str(before["revision"])
    return str(int(previous) + 1) if previous.isdigit() else ""


class K8sExecutor:
    """Runs K8S tasks against the endpoint in the task's `kubernetesServer` role."""

    def __init__(
        self,
        endpoints: Callable[[str], Endpoint],
        *,
        deny: Sequence[Network] = DEFAULT_EGRESS_DENY,
        clusters: ClusterClients | None = None,
        budget: float = RETRY_BUDGET,
        interval: float = VERIFY_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = endpoints
        self.deny = tuple(deny)  # what a git endpoint's host may not be (ROLLWAY_EGRESS_DENY)
        self.clusters = clusters or ClusterClients()
        self.backoff = Backoff(budget=budget)  # seconds a busy or unreachable cluster is retried from its first failure
        self.interval = interval
        self.clock = clock  # wall-clock: a VERIFY's attempts may run on different workers

    def execute(self, call: TaskCall) -> Outcome:
        source: dict[str, str] = {}
        try:
            task = K8sInput.read(self._from_git(call, source) if reads_git(call.input) else call.input)
        except ValueError as error:
            return Failed(str(error))
        except DatabaseUnavailable:
            raise
        except RollwayError as error:
            return Failed(error.message)
        outcome = self._run(task, call)
        if source and isinstance(outcome, Succeeded):
            return Succeeded({**outcome.output, "source": source})
        return outcome

    def _from_git(self, call: TaskCall, source: dict[str, str]) -> Mapping[str, Any]:
        """The task's input with its YAML read from the file `filepath` names in its git endpoint's repository
        and `scmConstants` filled in; `source` is told where it came from."""
        endpoint_id = call.endpoints.get(SCM)
        if not endpoint_id:
            raise ValueError(f"the task has a filepath but names no {SCM} endpoint (endpoints: {{{SCM}: NAME}})")
        path = str(call.input["filepath"])
        endpoint = self.endpoints(endpoint_id)
        found = read_file(endpoint, path, self.deny)
        constants = call.input.get("scmConstants") or {}
        if gitsource.constants_problems(constants):
            raise ValueError("scmConstants must map each constant's name to a text, number or flag")
        text = gitsource.substitute(found.text, constants, path)
        source.update({"repository": endpoint.url, "branch": endpoint.branch or DEFAULT_BRANCH, "path": path})
        source["commit"] = found.commit
        return {**call.input, "yaml": text}

    def _run(self, task: K8sInput, call: TaskCall) -> Outcome:
        # What earlier attempts learned; copied, as the worker's state is the last attempt's answer.
        memory: dict[str, Any] = copy.deepcopy(dict(call.state.get("memory") or {}))
        try:
            cluster = self._cluster(call)
            return self._act(task, cluster, memory)
        except (ClusterBusy, ClusterUnreachable) as error:
            return self._again(error, call.state, memory)
        except DatabaseUnavailable:
            raise  # Rollway's own database, not the task, failed: the attempt is not over (see runner.py)
        except RollwayError as error:
            return Failed(error.message)
        except Exception as error:  # a client bug or an odd answer must fail the task, not the worker
            log.exception("K8S %s failed unexpectedly", task.action)
            return Failed(f"K8S {task.action} failed unexpectedly: {type(error).__name__}: {error}")

    def _cluster(self, call: TaskCall) -> ClusterClient:
        hint = f"endpoints: {{{KUBERNETES_SERVER}: NAME}}"
        return cluster_of(self.endpoints, self.clusters, call.endpoints, KUBERNETES_SERVER, hint)

    def _again(self, error: ClusterError, state: Mapping[str, Any], memory: dict[str, Any]) -> Outcome:
        return ask_again(self.backoff, self.clock(), error, state, memory)

    def _act(self, task: K8sInput, cluster: ClusterClient, memory: dict[str, Any]) -> Outcome:
        if task.action == "GET":
            return self._get(task, cluster)
        if task.action == "CREATE":
            return self._create(task, cluster, memory)
        if task.action == "APPLY":
            return self._apply(task, cluster, memory)
        if task.action == "DELETE":
            return self._delete(task, cluster)
        if task.action == "ROLLBACK":
            return self._rollback(task, cluster, memory)
        return self._verify(task, cluster, memory)

    # --- object actions ---

    @staticmethod
    def _get(task: K8sInput, cluster: ClusterClient) -> Outcome:
        report = Report()
        for document in task.documents:
            ref = cluster.ref_of(document, task.namespace)
            found = cluster.read(ref)
            if found is None:
                return Failed(f"{ref} does not exist on {cluster.url}", report.output())
            report.put(ref, found)
        return Succeeded(report.output())

    @staticmethod
    def _create(task: K8sInput, cluster: ClusterClient, memory: dict[str, Any]) -> Outcome:
        report = Report()
        created: list[str] = memory.setdefault("created", [])
        for document in task.documents:
            ref = cluster.ref_of(document, task.namespace)
            try:
                obj, change = cluster.create(ref, document), "created"
                created.append(str(ref))
            except ClusterError as error:
                # An object this task created on an earlier attempt is its own, not a conflict.
                if error.reason != "AlreadyExists" or not (task.continue_on_conflict or str(ref) in created):
                    hint = "" if error.reason != "AlreadyExists" else " (set continueOnConflict to accept it)"
                    return Failed(f"{error.message}{hint}", report.output())
                obj, change = cluster.get(ref), "created" if str(ref) in created else "already exists"
            report.put(ref, obj, change)
            if _is_deployment(ref) and change == "created":
                report.deployments[ref.name] = _change(_summary(None), obj, "1")
        return Succeeded(report.output())

    @staticmethod
    def _apply(task: K8sInput, cluster: ClusterClient, memory: dict[str, Any]) -> Outcome:
        report = Report()
        seen: dict[str, Any] = memory.setdefault("before", {})
        for document in task.documents:
            ref = cluster.ref_of(document, task.namespace)
            if _is_deployment(ref) and str(ref) not in seen:
                # Read before writing, and remember it: a retry after a partial apply must report the same.
                seen[str(ref)] = _summary(cluster.read(ref))
            applied = cluster.apply(ref, document)
            report.put(ref, applied.object, applied.change)
            if _is_deployment(ref):
                before = seen[str(ref)]
                report.deployments[ref.name] = _change(before, applied.object, _revision_after(before, applied.object))
        return Succeeded(report.output())

    @staticmethod
    def _delete(task: K8sInput, cluster: ClusterClient) -> Outcome:
        report = Report()
        for document in task.documents:
            ref = cluster.ref_of(document, task.namespace)
            answer = cluster.delete(ref)
            if answer is None:
                report.changes.append(f"{ref.kind.kind.lower()}/{ref.name} not found (already gone)")
            else:
                report.put(ref, answer, "deleted")
        return Succeeded(report.output())

    # --- Deployment actions ---

    @staticmethod
    def _deployment(task: K8sInput, cluster: ClusterClient) -> tuple[ObjectRef, dict[str, Any]]:
        ref = cluster.ref("apps/v1", "Deployment", task.deployment, task.namespace)
        return ref, cluster.get(ref)

    @staticmethod
    def _rollback(task: K8sInput, cluster: ClusterClient, memory: dict[str, Any]) -> Outcome:
        ref, deployment = K8sExecutor._deployment(task, cluster)
        before = memory.setdefault("before", _summary(deployment))
        replica_sets = cluster.replica_sets(deployment)
        # A retry goes back to the ReplicaSet the first attempt chose, even though that attempt may have renumbered it.
        plan = plan_undo(deployment, replica_sets, task.revision, memory.get("replicaSet"))
        memory["replicaSet"] = plan.replica_set
        after = cluster.json_patch(ref, plan.patch) if plan.patch is not None else deployment
        target = next(rs for rs in replica_sets if rs["metadata"]["name"] == plan.replica_set)
        changed = not same_template(before["template"], (target.get("spec") or {}).get("template"))
        report = Report()
        report.put(ref, after)
        report.deployments[ref.name] = _change(before, after, plan.revision_after)
        if changed:
            message = f"rolled back deployment {ref.name} to revision {plan.revision} (image {plan.image})"
        else:
            message = plan.message
        report.extra.update(rolledBack=changed, rolledBackTo=str(plan.revision), message=message)
        return Succeeded(report.output())

    def _verify(self, task: K8sInput, cluster: ClusterClient, memory: dict[str, Any]) -> Outcome:
        now = self.clock()
        started = float(memory.setdefault("startedAt", now))
        ref, deployment = self._deployment(task, cluster)
        # The ReplicaSets, not only the Deployment's status, say whether the deployed template runs: a server that
        # misreports the generation would otherwise pass off the previous rollout as this one.
        replica_sets = cluster.replica_sets(deployment)
        status = rollout_status(deployment, replica_sets, task.revision)
        if status.failed:
            problems = self._pod_problems(cluster, deployment, replica_sets)
            report = self._verified(ref, deployment, status.message)
            pods = f"; pods: {'; '.join(problems)}" if problems else ""
            return Failed(status.message.rstrip(".") + pods, report)
        output = self._verified(ref, deployment, status.message)
        if status.complete:
            return Succeeded(output)
        remaining = task.timeout - (now - started)
        if remaining <= 0:
            message = f"rollout of deployment {ref.name} did not complete within {task.timeout:g} s: {status.message}"
            return Failed(message, output)
        return Waiting(min(self.interval, remaining), {"retries": 0, "memory": memory}, status.message)

    @staticmethod
    def _verified(ref: ObjectRef, deployment: dict[str, Any], message: str) -> dict[str, Any]:
        report = Report()
        report.put(ref, deployment)
        report.extra.update(revision=revision_of(deployment), image=image_of(deployment), status=message)
        return report.output()

    @staticmethod
    def _pod_problems(cluster: ClusterClient, deployment: Doc, replica_sets: list[Doc]) -> list[str]:
        """Why the current template's pods are not running (ImagePullBackOff...), when the cluster says."""
        current = current_replica_set(deployment, replica_sets)
        pods = cluster.pods(deployment)
        if current is not None:
            label = ((current.get("metadata") or {}).get("labels") or {}).get("pod-template-hash")
            pods = [
                pod
                for pod in pods
                if ((pod.get("metadata") or {}).get("labels") or {}).get("pod-template-hash") == label
            ]
        return pod_problems(pods)
