"""A CI task's Kubernetes Job, as pure decisions: its name, its manifests, how far it got, and what it printed.

The Job is named after the task run (the same for every attempt), so an attempt that was lost or retried finds
the Job it created instead of making a second one. The steps never appear in the Job's spec: the script (the steps
after `set -e`, then one line per `export` name) and the workspace's environment variables go in a Secret of the
same name that the container reads them from, so secrets bound into the steps are not in clear in the Job.
Exported values come back in the pod's log, one marked line each (`::rollway-export::NAME=value`); only the
first line of a value is kept.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.workspace import ENV_NAME, KUBERNETES_WORKSPACE, quantity

# Job names are DNS-1123 labels: the pods are labelled `job-name` with them, and a label value is at most 63.
MAX_NAME = 63
NAME_PREFIX = "rollway-ci"
CONTAINER = "steps"
STEPS_KEY = "steps"
STEPS_VARIABLE = "ROLLWAY_STEPS"
EXPORT_MARK = "::rollway-export::"
DEFAULT_NAMESPACE = "default"
# The Job gives up on its own after this (activeDeadlineSeconds): a CI task cannot hold its stage for ever.
DEADLINE_SECONDS = 3_600
# Finished Jobs stay this long for anyone to read their pods' logs, then the cluster deletes them (and the Secret
# they own).
KEPT_SECONDS = 86_400
LOG_TAIL_LINES = 50
LOG_TAIL_BYTES = 8_000
LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_PIPELINE = "rollway.io/pipeline"
LABEL_EXECUTION = "rollway.io/execution"
LABEL_STAGE = "rollway.io/stage"
LABEL_TASK = "rollway.io/task"
LABEL_RUN = "rollway.io/task-run"
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class RunNames:
    """Who a Job belongs to: the task run (stable across attempts) and the names that label it."""

    run_id: str
    execution_id: str = ""
    pipeline: str = ""
    stage: str = ""
    task: str = ""


@dataclass(frozen=True)
class JobPlan:
    """What a CI task asks of the cluster: a Secret holding its script and environment, and the Job running it."""

    name: str
    namespace: str
    secret: dict[str, Any]
    job: dict[str, Any]
    exports: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def job_name(names: RunNames) -> str:
    """`rollway-ci-<stage>-<task>-<hash of the run>`: readable, unique per run, a DNS-1123 label."""
    digest = hashlib.sha256(names.run_id.encode()).hexdigest()[:10]
    slug = _NOT_NAME.sub("-", f"{names.stage}-{names.task}".lower()).strip("-")
    room = MAX_NAME - len(NAME_PREFIX) - len(digest) - 2
    slug = slug[:room].strip("-")
    return "-".join(part for part in (NAME_PREFIX, slug, digest) if part)


def label_value(text: str) -> str:
    """Text as a label value: at most 63 characters of `[A-Za-z0-9_.-]`, starting and ending alphanumeric."""
    cleaned = _NOT_LABEL.sub("-", text)[:MAX_NAME]
    return cleaned.strip("-_.")


def labels_of(names: RunNames) -> dict[str, str]:
    """The labels of a run's Job, Secret and pods (the full names go in annotations: labels are bounded)."""
    labels = {
        LABEL_MANAGED: "rollway",
        LABEL_PIPELINE: label_value(names.pipeline),
        LABEL_EXECUTION: label_value(names.execution_id),
        LABEL_STAGE: label_value(names.stage),
        LABEL_TASK: label_value(names.task),
        LABEL_RUN: label_value(names.run_id),
    }
    return {key: value for key, value in labels.items() if value}


def script(steps: Sequence[str], exports: Sequence[str]) -> str:
    """The shell script of a CI task: stop at the first failing step, then print each exported variable."""
    lines = ["set -e", *steps]
    if exports:
        marks = " ".join(f'"{EXPORT_MARK}{name}=${{{name}-}}"' for name in exports)
        lines.append(f"printf '%s\\n' {marks}")
    return "\n".join(lines) + "\n"


def plan(task_input: Mapping[str, Any], names: RunNames) -> JobPlan:
    """The Secret and Job of a CI task's bound input; ValueError naming what cannot be used."""
    workspace = task_input.get("workspace")
    if not isinstance(workspace, Mapping):
        raise ValueError("the task has no workspace: a CI task runs in the pipeline's workspace")
    kind = str(workspace.get("type") or KUBERNETES_WORKSPACE)
    if kind.upper() != KUBERNETES_WORKSPACE:
        raise ValueError(f"the workspace is a {kind} host: Rollway runs CI tasks on K8S workspaces only")
    image = workspace.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"workspace.image must name the builder image, not {image!r}")
    steps, exports = _texts(task_input, "steps"), _texts(task_input, "export")
    bad = [name for name in exports if not ENV_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"export must list variable names, not {bad[0]!r}")
    if not steps:
        raise ValueError("steps must list at least one command")
    name, namespace = job_name(names), str(workspace.get("namespace") or DEFAULT_NAMESPACE)
    labels = labels_of(names)
    annotations = {f"rollway.io/{key}": value for key, value in _annotations(names).items() if value}
    environment = _environment(workspace.get("environmentVariables"))
    meta = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}
    data = {STEPS_KEY: script(steps, exports), **{f"env.{key}": value for key, value in environment.items()}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }
    container = _container(image.strip(), name, environment, workspace)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 0,  # steps are not known to be safe to run twice
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": KEPT_SECONDS,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }
    artifacts = tuple(_texts(task_input, "artifacts"))
    return JobPlan(name, namespace, secret, job, tuple(exports), artifacts, labels)


def _annotations(names: RunNames) -> dict[str, str]:
    return {"pipeline": names.pipeline, "stage": names.stage, "task": names.task, "execution": names.execution_id}


def _texts(task_input: Mapping[str, Any], name: str) -> list[str]:
    value = task_input.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be a list of text, not {value!r}")
    return [item for item in value if item.strip()]


def _environment(value: object) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("workspace.environmentVariables must be an object of variable names and values")
    bad = [str(key) for key in value if not ENV_NAME.fullmatch(str(key))]
    if bad:
        raise ValueError(f"workspace.environmentVariables: {bad[0]!r} is not a variable name")
    return {str(key): "" if item is None else str(item) for key, item in value.items()}


def _container(image: str, secret: str, environment: Mapping[str, str], workspace: Mapping[str, Any]) -> dict[str, Any]:
    """The one container: a shell evaluating the script it reads from the Secret, in the workspace's path."""
    env = [{"name": STEPS_VARIABLE, "valueFrom": {"secretKeyRef": {"name": secret, "key": STEPS_KEY}}}]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": f"env.{key}"}}} for key in environment]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": ["/bin/sh", "-c", f'eval "${STEPS_VARIABLE}"'],
        "env": env,
    }
    path = workspace.get("path")
    if isinstance(path, str) and path.strip():
        container["workingDir"] = path.strip()
    limits = workspace.get("limits")
    if isinstance(limits, Mapping):
        try:
            found = {name: quantity(name, limits.get(name)) for name in ("cpu", "memory")}
        except ValueError as error:
            raise ValueError(f"workspace.limits: {error}") from None
        if any(found.values()):
            container["resources"] = {"limits": {name: value for name, value in found.items() if value}}
    return container


@dataclass(frozen=True)
class JobState:
    """Where a Job is: still running, or ended Complete or Failed (with the cluster's reason)."""

    ended: str | None  # "Complete", "Failed" or None
    message: str


def job_state(job: Mapping[str, Any]) -> JobState:
    """A Job's progress from its status conditions and counts, as `kubectl wait --for=condition=` reads them."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        kind = condition.get("type")
        if kind in ("Complete", "Failed") and condition.get("status") == "True":
            said = ": ".join(str(part) for part in (condition.get("reason"), condition.get("message")) if part)
            return JobState(str(kind), said or str(kind))
    counts = ", ".join(f"{status[key]} {key}" for key in ("active", "succeeded", "failed") if status.get(key))
    return JobState(None, counts or "no pod started yet")


def latest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod whose log tells how the Job ended: the newest (a Job with backoffLimit 0 has one)."""
    ranked = sorted(pods, key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp") or ""))
    return ranked[-1] if ranked else None


def pod_message(pod: Mapping[str, Any]) -> str:
    """Why a Job's pod ended or is stuck, in the cluster's words: exit code and reason, or the waiting reason."""
    status = pod.get("status") or {}
    parts = []
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "terminated" in state:
            ended = state["terminated"] or {}
            said = f" ({ended['message']})" if ended.get("message") else ""
            exit_said = f"exited {ended.get('exitCode')} {ended.get('reason')}{said}"
            parts.append(f"container {container.get('name')} {exit_said}")
        elif "waiting" in state:
            waiting = state["waiting"] or {}
            said = f": {waiting['message']}" if waiting.get("message") else ""
            parts.append(f"container {container.get('name')} waiting: {waiting.get('reason')}{said}")
    name = (pod.get("metadata") or {}).get("name")
    return f"pod {name} {status.get('phase') or 'Pending'}" + (f": {'; '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class Printed:
    """What the steps printed: the exported values, and the log's tail without the export lines."""

    exports: dict[str, str]
    tail: str


def read_log(text: str, exports: Sequence[str]) -> Printed:
    """The exported values marked in a pod's log (a name the log does not mark is empty), and the rest's tail."""
    found: dict[str, str] = dict.fromkeys(exports, "")
    kept = []
    for line in text.splitlines():
        if line.startswith(EXPORT_MARK):
            name, _, value = line[len(EXPORT_MARK) :].partition("=")
            if name in found:
                found[name] = value
            continue
        kept.append(line)
    tail = "\n".join(kept[-LOG_TAIL_LINES:])
    return Printed(found, tail[-LOG_TAIL_BYTES:])
