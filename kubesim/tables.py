"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for, with each kind's usual columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubesim.clock import parse_timestamp
from kubesim.objects import metadata, nested
from kubesim.resources import ResourceType
from kubesim.status import JsonObject

Cells = Callable[[JsonObject, str], list[Any]]
Columns = tuple[tuple[str, int], ...]


def wants_table(accept: str) -> bool:
    """Whether an ``Accept`` header asks for a Table."""
    return "as=Table" in accept


def human_duration(seconds: float) -> str:
    """Kubernetes' ``HumanDuration``, as shown in AGE columns."""
    total = int(seconds)
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    return f"{hours // 24}d"


def _pod_status(pod: JsonObject) -> str:
    if metadata(pod).get("deletionTimestamp"):
        return "Terminating"
    reason = str(nested(pod, "status", "phase") or "Pending")
    for container in nested(pod, "status", "containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = str(waiting["reason"])
    return reason


def _pod_cells(pod: JsonObject) -> list[Any]:
    statuses = nested(pod, "status", "containerStatuses") or []
    total = len(nested(pod, "spec", "containers") or [])
    ready = sum(1 for container in statuses if container.get("ready"))
    restarts = sum(int(container.get("restartCount") or 0) for container in statuses)
    return [f"{ready}/{total}", _pod_status(pod), restarts]


def _service_ports(service: JsonObject) -> str:
    ports = []
    for port in nested(service, "spec", "ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _int(obj: JsonObject, *path: str) -> int:
    return int(nested(obj, *path) or 0)


def _workload_wide(obj: JsonObject) -> list[Any]:
    containers = nested(obj, "spec", "template", "spec", "containers") or []
    selector = nested(obj, "spec", "selector", "matchLabels") or {}
    return [
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        ",".join(f"{key}={value}" for key, value in selector.items()),
    ]


def _job_duration(job: JsonObject) -> str:
    started, ended = nested(job, "status", "startTime"), nested(job, "status", "completionTime")
    if not started or not ended:
        return ""
    return human_duration(parse_timestamp(str(ended)) - parse_timestamp(str(started)))


def _name(obj: JsonObject) -> str:
    return str(metadata(obj).get("name"))


_WIDE_WORKLOAD: Columns = (("Containers", 1), ("Images", 1), ("Selector", 1))

# Per kind: the columns, in kubectl's order (priority 1 only shows with -o wide), and the row's cells.
_COLUMNS: dict[str, tuple[Columns, Cells]] = {
    "Namespace": (
        (("Name", 0), ("Status", 0), ("Age", 0)),
        lambda o, age: [_name(o), nested(o, "status", "phase"), age],
    ),
    "Node": (
        (("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0)),
        lambda o, age: [_name(o), "Ready", "<none>", age, nested(o, "status", "nodeInfo", "kubeletVersion")],
    ),
    "Pod": (
        (("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1)),
        lambda o, age: [
            _name(o),
            *_pod_cells(o),
            age,
            nested(o, "status", "podIP") or "<none>",
            nested(o, "spec", "nodeName") or "<none>",
        ],
    ),
    "Service": (
        (("Name", 0), ("Type", 0), ("Cluster-IP", 0), ("External-IP", 0), ("Port(s)", 0), ("Age", 0), ("Selector", 1)),
        lambda o, age: [
            _name(o),
            nested(o, "spec", "type"),
            nested(o, "spec", "clusterIP"),
            "<none>",
            _service_ports(o),
            age,
            ",".join(f"{k}={v}" for k, v in (nested(o, "spec", "selector") or {}).items()) or "<none>",
        ],
    ),
    "ConfigMap": (
        (("Name", 0), ("Data", 0), ("Age", 0)),
        lambda o, age: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), age],
    ),
    "Secret": (
        (("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)),
        lambda o, age: [_name(o), o.get("type"), len(o.get("data") or {}), age],
    ),
    "Deployment": (
        (("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0), *_WIDE_WORKLOAD),
        lambda o, age: [
            _name(o),
            f"{_int(o, 'status', 'readyReplicas')}/{_int(o, 'spec', 'replicas')}",
            _int(o, "status", "updatedReplicas"),
            _int(o, "status", "availableReplicas"),
            age,
            *_workload_wide(o),
        ],
    ),
    "ReplicaSet": (
        (("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Age", 0), *_WIDE_WORKLOAD),
        lambda o, age: [
            _name(o),
            _int(o, "spec", "replicas"),
            _int(o, "status", "replicas"),
            _int(o, "status", "readyReplicas"),
            age,
            *_workload_wide(o),
        ],
    ),
    "Job": (
        (("Name", 0), ("Completions", 0), ("Duration", 0), ("Age", 0), ("Containers", 1), ("Images", 1)),
        lambda o, age: [
            _name(o),
            f"{_int(o, 'status', 'succeeded')}/{_int(o, 'spec', 'completions')}",
            _job_duration(o),
            age,
            *_workload_wide(o)[:2],
        ],
    ),
}
_DEFAULT: tuple[Columns, Cells] = ((("Name", 0), ("Age", 0)), lambda o, age: [_name(o), age])


def render(resource: ResourceType, items: list[JsonObject], version: str, include: str, now: float) -> JsonObject:
    """A Table of ``items``; ``include`` is the ``includeObject`` parameter (``None``, ``Metadata``, ``Object``)."""
    names, cells = _COLUMNS.get(resource.kind, _DEFAULT)
    columns = [
        {
            "name": name,
            "type": "string",
            "format": "name" if name == "Name" else "",
            "description": name,
            "priority": rank,
        }
        for name, rank in names
    ]
    rows = []
    for item in items:
        created = metadata(item).get("creationTimestamp")
        age = human_duration(now - parse_timestamp(created)) if created else "<unknown>"
        row: JsonObject = {"cells": cells(item, age)}
        if include == "Object":
            row["object"] = {"kind": resource.kind, "apiVersion": resource.api_version, **item}
        elif include != "None":
            partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata(item)}
            row["object"] = partial
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": version},
        "columnDefinitions": columns,
        "rows": rows,
    }
