"""Defaulting: the fields the API server fills in on every write, per kind (``stringData`` conversion included)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from kubesim.objects import name_of, string_map
from kubesim.status import BadRequest, JsonObject


def apply_defaults(kind: str, obj: JsonObject) -> None:
    """Fill in ``obj``'s defaulted fields in place."""
    defaulter = _DEFAULTERS.get(kind)
    if defaulter is not None:
        defaulter(obj)


def _default(container: JsonObject, key: str, value: Any) -> Any:
    """Set ``key`` unless it holds a non-null value; return the value in place."""
    if container.get(key) is None:
        container[key] = value
    return container[key]


def _section(container: JsonObject, key: str) -> JsonObject:
    value = container.get(key)
    if not isinstance(value, dict):
        value = {}
        container[key] = value
    return value


def _deployment(obj: JsonObject) -> None:
    spec = _section(obj, "spec")
    _default(spec, "replicas", 1)
    _default(spec, "revisionHistoryLimit", 10)
    _default(spec, "progressDeadlineSeconds", 600)
    strategy = _section(spec, "strategy")
    if _default(strategy, "type", "RollingUpdate") == "RollingUpdate":
        rolling = _section(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", "25%")
        _default(rolling, "maxSurge", "25%")
    _pod_template(spec)


def _replica_set(obj: JsonObject) -> None:
    spec = _section(obj, "spec")
    _default(spec, "replicas", 1)
    _pod_template(spec)


def _job(obj: JsonObject) -> None:
    """What the API server fills in on a Job: counts, and (unless `manualSelector`) a selector on the Job's uid with
    the labels that select its pods put on the template."""
    spec = _section(obj, "spec")
    _default(spec, "parallelism", 1)
    _default(spec, "completions", 1)
    _default(spec, "backoffLimit", 6)
    if not spec.get("manualSelector") and spec.get("selector") is None:
        uid = str(_section(obj, "metadata").get("uid") or "")
        spec["selector"] = {"matchLabels": {"controller-uid": uid}}
        template = _section(spec, "template")
        string_map(template, "labels").update({"controller-uid": uid, "job-name": name_of(obj)})
    _pod_template(spec)


def _pod_template(spec: JsonObject) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        _pod_spec(_section(template, "spec"))


def _pod(obj: JsonObject) -> None:
    _pod_spec(_section(obj, "spec"))


def _pod_spec(spec: JsonObject) -> None:
    _default(spec, "restartPolicy", "Always")
    _default(spec, "terminationGracePeriodSeconds", 30)
    _default(spec, "dnsPolicy", "ClusterFirst")
    _default(spec, "securityContext", {})
    _default(spec, "schedulerName", "default-scheduler")
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                _container(container)


def _container(container: JsonObject) -> None:
    image = str(container.get("image") or "")
    tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
    latest = not tagged or image.endswith(":latest")
    _default(container, "imagePullPolicy", "Always" if latest else "IfNotPresent")
    _default(container, "terminationMessagePath", "/dev/termination-log")
    _default(container, "terminationMessagePolicy", "File")
    _default(container, "resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            _default(port, "protocol", "TCP")


def _service(obj: JsonObject) -> None:
    spec = _section(obj, "spec")
    service_type = _default(spec, "type", "ClusterIP")
    _default(spec, "sessionAffinity", "None")
    if service_type != "ExternalName":
        _default(spec, "ipFamilies", ["IPv4"])
        _default(spec, "ipFamilyPolicy", "SingleStack")
        _default(spec, "internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _default(port, "protocol", "TCP")
            if port.get("port") is not None:
                _default(port, "targetPort", port["port"])
    status = _section(obj, "status")
    _default(status, "loadBalancer", {})


def _secret(obj: JsonObject) -> None:
    _default(obj, "type", "Opaque")
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadRequest(f"illegal base64 data in secret {name_of(obj)!r} key {key!r}") from error
    # stringData is write-only: merged into data, never stored or returned.
    for key, value in (obj.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data


def _namespace(obj: JsonObject) -> None:
    spec = _section(obj, "spec")
    _default(spec, "finalizers", ["kubernetes"])
    string_map(obj, "labels")["kubernetes.io/metadata.name"] = name_of(obj)
    _default(_section(obj, "status"), "phase", "Active")


_DEFAULTERS: dict[str, Callable[[JsonObject], None]] = {
    "Deployment": _deployment,
    "ReplicaSet": _replica_set,
    "Job": _job,
    "Pod": _pod,
    "Service": _service,
    "Secret": _secret,
    "Namespace": _namespace,
}
