"""Builders and waiting helpers shared by kubesim's tests (imported by its basename: tests/ has no packages)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def deployment(
    name: str,
    image: str,
    *,
    replicas: int = 3,
    max_surge: int | str = 1,
    max_unavailable: int | str = 0,
    deadline: int | None = None,
    recreate: bool = False,
    history: int | None = None,
) -> dict[str, Any]:
    """A Deployment manifest with one container named ``app``."""
    strategy: dict[str, Any] = {"type": "Recreate"}
    if not recreate:
        strategy = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
        }
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "strategy": strategy,
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
        },
    }
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    if history is not None:
        spec["revisionHistoryLimit"] = history
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def service(name: str, app: str, port: int = 80) -> dict[str, Any]:
    """A ClusterIP Service selecting ``app=<app>``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": 8080}]},
    }


def wait_until(check: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def rolled_out(apps: Any, namespace: str, name: str) -> Any:
    """The Deployment when its latest generation is fully rolled out, else ``None``."""
    found = apps.read_namespaced_deployment(name, namespace)
    status, replicas = found.status, found.spec.replicas
    done = (
        (status.observed_generation or 0) >= found.metadata.generation
        and (status.updated_replicas or 0) == replicas
        and (status.replicas or 0) == replicas
        and (status.available_replicas or 0) == replicas
    )
    return found if done else None


def condition(obj: Any, kind: str) -> Any:
    """The status condition of type ``kind`` of a client model, or ``None``."""
    return next((c for c in obj.status.conditions or [] if c.type == kind), None)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A raw JSON request; returns ``(status, decoded body)`` for success and error answers alike."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")
