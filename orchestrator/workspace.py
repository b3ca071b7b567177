"""The CI task and the pipeline `workspace` it runs in (Code Stream's container host for CI tasks).

A CI task's `steps` (shell commands) run in the workspace's `image` as a Kubernetes Job on the workspace's
`endpoint` (a `kubernetes` endpoint). The workspace is written once per pipeline; when a CI task is queued it is
bound like any input and handed to the task as its `workspace` input, with the endpoint in the task's `workspace`
role, so the worker, the execution view and the restricted-endpoint checks see it as they see a K8S task's
`kubernetesServer`. Pure checks and lookups; the Job itself is built in `cijob.py`.

Workspace fields read: `type` (K8S; Code Stream's DOCKER host is not run, and saves the pipeline disabled with a
warning), `endpoint`, `image`, `path` (the working directory), `namespace` (default `default`), `limits`
(`cpu` in cores, `memory` in MB, as Code Stream writes them) and `environmentVariables`. `registry`, `cache` and
`autoCloneForTrigger` are kept and exported but not acted on: the image is pulled with the cluster's own
credentials, nothing is cached between runs and no Git repository is cloned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from orchestrator.bindings import BINDING
from orchestrator.errors import Problem
from orchestrator.pipeline import Pipeline, Task

CI = "CI"
# The role the workspace's endpoint takes on a CI task (as `kubernetesServer` on a K8S task).
WORKSPACE_ROLE = "workspace"
KUBERNETES_WORKSPACE = "K8S"
WORKSPACE_FIELDS = frozenset(
    {
        "type",
        "endpoint",
        "image",
        "registry",
        "path",
        "cache",
        "limits",
        "autoCloneForTrigger",
        "namespace",
        "environmentVariables",
    }
)
_FIELD_LIST = ", ".join(sorted(WORKSPACE_FIELDS))
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# What one CI task's steps may hold: the script travels in a Secret and an environment variable, and Linux takes
# at most 128 KiB in one.
MAX_STEPS_BYTES = 100_000


def _bound(value: object) -> bool:
    return isinstance(value, str) and BINDING.search(value) is not None


def has_ci(pipeline: Pipeline) -> bool:
    """Whether any task of the pipeline is a CI task (the only ones that use the workspace)."""
    return any(task.type == CI for _, _, task, _ in pipeline.ordered_tasks())


def endpoint_name(pipeline: Pipeline) -> str | None:
    """The endpoint the pipeline's CI tasks run on, when it has CI tasks and its workspace names one."""
    name = pipeline.workspace.get("endpoint")
    return name if has_ci(pipeline) and isinstance(name, str) and name.strip() else None


def endpoints_of(pipeline: Pipeline, task: Task) -> Mapping[str, str]:
    """The endpoints a task uses, by role: its own, and a CI task's workspace endpoint."""
    name = endpoint_name(pipeline)
    if task.type != CI or name is None:
        return task.endpoints
    return {**task.endpoints, WORKSPACE_ROLE: name}


def for_run(pipeline: Pipeline, task: Task) -> Task:
    """The task as it is queued: a CI task gets the workspace as its `workspace` input and endpoint."""
    if task.type != CI:
        return task
    return replace(
        task, input={**task.input, "workspace": dict(pipeline.workspace)}, endpoints=endpoints_of(pipeline, task)
    )


def unsupported(pipeline: Pipeline) -> list[Problem]:
    """A workspace Rollway does not run CI tasks on (Code Stream's DOCKER host), when the pipeline has CI tasks."""
    kind = pipeline.workspace.get("type", KUBERNETES_WORKSPACE)
    if not has_ci(pipeline) or not isinstance(kind, str) or kind.upper() == KUBERNETES_WORKSPACE or _bound(kind):
        return []
    return [Problem("workspace.type", f"the workspace is a {kind} host: Rollway runs CI tasks on K8S workspaces only")]


def problems(pipeline: Pipeline) -> list[Problem]:
    """What is wrong with the workspace of a pipeline that has CI tasks (nothing is checked without one)."""
    if not has_ci(pipeline):
        return []
    found = [
        Problem(f"workspace.{name}", f"is not a workspace field (expected one of: {_FIELD_LIST})")
        for name in sorted(set(pipeline.workspace) - WORKSPACE_FIELDS)
    ]
    kind = pipeline.workspace.get("type", KUBERNETES_WORKSPACE)
    if not isinstance(kind, str):
        found.append(Problem("workspace.type", f"must be {KUBERNETES_WORKSPACE}, not {kind!r}"))
    elif kind.upper() != KUBERNETES_WORKSPACE:
        return found  # a warning (see `unsupported`): the rest is only read on K8S
    for name, what in (("endpoint", "the name of a kubernetes endpoint"), ("image", "the builder image")):
        value = pipeline.workspace.get(name)
        if not isinstance(value, str) or not value.strip():
            found.append(Problem(f"workspace.{name}", f"CI tasks need the workspace's {name}: {what}"))
    return found + _namespace(pipeline.workspace) + _limits(pipeline.workspace) + _environment(pipeline.workspace)


def _namespace(workspace: Mapping[str, Any]) -> list[Problem]:
    value = workspace.get("namespace")
    if value in (None, "") or _bound(value):
        return []
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        return [Problem("workspace.namespace", f"must be a Kubernetes namespace name, not {value!r}")]
    return []


def _limits(workspace: Mapping[str, Any]) -> list[Problem]:
    limits = workspace.get("limits")
    if limits in (None, "", {}) or _bound(limits):
        return []
    if not isinstance(limits, Mapping):
        return [Problem("workspace.limits", "must be an object with 'cpu' (cores) and 'memory' (MB)")]
    found = [
        Problem(f"workspace.limits.{name}", "is not a limit (expected cpu, memory)")
        for name in sorted(set(limits) - {"cpu", "memory"}, key=str)
    ]
    for name in ("cpu", "memory"):
        try:
            quantity(name, limits.get(name))
        except ValueError as error:
            found.append(Problem(f"workspace.limits.{name}", str(error)))
    return found


def _environment(workspace: Mapping[str, Any]) -> list[Problem]:
    variables = workspace.get("environmentVariables")
    if variables in (None, "", {}) or _bound(variables):
        return []
    if not isinstance(variables, Mapping):
        return [Problem("workspace.environmentVariables", "must be an object of variable names and values")]
    return [
        Problem(f"workspace.environmentVariables.{name}", "is not an environment variable name")
        for name in variables
        if not ENV_NAME.fullmatch(str(name))
    ]


def quantity(name: str, value: object) -> str | None:
    """A Code Stream limit as a Kubernetes quantity (None when unset): cpu in cores, memory in MB (`512` is
    `512Mi`); a Kubernetes quantity written as text (`500m`, `1Gi`) is taken as it is. ValueError otherwise."""
    if value in (None, "", 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a number, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            value = float(text)
        elif _bound(text) or re.fullmatch(r"\d+(\.\d+)?(m|Ki|Mi|Gi|k|M|G)", text):
            return text
        else:
            raise ValueError(f"must be a number (or a Kubernetes quantity such as 500m or 1Gi), not {value!r}")
    if value < 0:
        raise ValueError(f"must be 0 or more, not {value!r}")
    number = f"{value:g}"
    return f"{number}Mi" if name == "memory" else number


def _names(task_input: Mapping[str, object], name: str, pattern: re.Pattern[str] | None) -> list[Problem]:
    value = task_input.get(name)
    if value is None or _bound(value):
        return []
    if not isinstance(value, list):
        return [Problem(name, f"must be a list, not {value!r}")]
    return [
        Problem(f"{name}[{index}]", f"must be {'a variable name' if pattern else 'text'}, not {item!r}")
        for index, item in enumerate(value)
        if not isinstance(item, str) or not item.strip() or (pattern is not None and not pattern.fullmatch(item))
    ]


def check_ci(task_input: Mapping[str, object]) -> list[Problem]:
    """A CI task's input: `steps` (shell commands), `export` (variable names), `artifacts` (paths), `process`."""
    steps = task_input.get("steps")
    found = _names(task_input, "steps", None) + _names(task_input, "export", ENV_NAME)
    found += _names(task_input, "artifacts", None)
    if isinstance(steps, list) and not steps:
        found.append(Problem("steps", "a CI task needs at least one step"))
    if isinstance(steps, list) and len("\n".join(map(str, steps)).encode()) > MAX_STEPS_BYTES:
        found.append(Problem("steps", f"must hold at most {MAX_STEPS_BYTES} bytes of commands"))
    process = task_input.get("process")
    if process is not None and not isinstance(process, list) and not _bound(process):
        found.append(Problem("process", f"must be a list, not {process!r}"))
    return found


def written_ci(task_input: Mapping[str, object]) -> list[Problem]:
    """A CI task's input as written: its workspace is the pipeline's, never its own."""
    if "workspace" in task_input:
        return [Problem("workspace", "is the pipeline's: write it at the top of the pipeline, not in a task")]
    return []
