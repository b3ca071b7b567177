"""Validation: the checks that make the API server answer 422 Invalid, per kind."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubesim.objects import labels_of, name_of, nested
from kubesim.resources import ResourceType
from kubesim.selectors import LabelSelector
from kubesim.status import BadRequest, JsonObject, invalid

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


class _Causes:
    """Collects ``(reason, field, message)`` causes like the API server's field.ErrorList."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def required(self, field: str) -> None:
        self.items.append(("FieldValueRequired", field, "Required value"))

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.items.append(("FieldValueInvalid", field, f"Invalid value: {_go_repr(value)}: {detail}"))

    def unsupported(self, field: str, value: Any, allowed: list[str]) -> None:
        supported = ", ".join(f'"{item}"' for item in allowed)
        message = f"Unsupported value: {_go_repr(value)}: supported values: {supported}"
        self.items.append(("FieldValueNotSupported", field, message))

    def forbidden(self, field: str, detail: str) -> None:
        self.items.append(("FieldValueForbidden", field, f"Forbidden: {detail}"))


def _mapping(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _go_repr(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def validate(resource: ResourceType, obj: JsonObject, old: JsonObject | None = None) -> None:
    """Raise ``Invalid`` naming every problem with ``obj`` (``old`` is the stored object on updates)."""
    causes = _Causes()
    _validate_metadata(resource, obj, causes)
    validator = _VALIDATORS.get(resource.kind)
    if validator is not None:
        validator(obj, old, causes)
    if causes.items:
        raise invalid(resource.kind, resource.group, name_of(obj), causes.items)


def _validate_metadata(resource: ResourceType, obj: JsonObject, causes: _Causes) -> None:
    name = name_of(obj)
    if not name:
        causes.required("metadata.name")
    elif resource.kind == "Service" and not _is_label(name, _DNS_1035_LABEL):
        detail = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        causes.invalid("metadata.name", name, detail + "character, and end with an alphanumeric character")
    elif resource.kind == "Namespace" and not _is_label(name, _DNS_LABEL):
        causes.invalid(
            "metadata.name",
            name,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric "
            "characters or '-', and must start and end with an alphanumeric character",
        )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        causes.invalid(
            "metadata.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    for key, value in labels_of(obj).items():
        _validate_label("metadata.labels", key, value, causes)


def _is_label(text: str, pattern: re.Pattern[str]) -> bool:
    return len(text) <= 63 and pattern.fullmatch(text) is not None


def _validate_label(field: str, key: str, value: Any, causes: _Causes) -> None:
    prefix, _, name = key.rpartition("/")
    if (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)) or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        causes.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.'")
    if not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
        causes.invalid(
            field,
            value,
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character",
        )


def _validate_pod_spec(spec: Any, field: str, causes: _Causes) -> None:
    if not isinstance(spec, dict):
        causes.required(field)
        return
    containers = spec.get("containers")
    if not containers:
        causes.required(f"{field}.containers")
        return
    seen: set[str] = set()
    for index, container in enumerate(containers):
        path = f"{field}.containers[{index}]"
        name = container.get("name") if isinstance(container, dict) else None
        if not name:
            causes.required(f"{path}.name")
        elif not _is_label(str(name), _DNS_LABEL):
            causes.invalid(
                f"{path}.name",
                name,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                "characters or '-', and must start and end with an alphanumeric character",
            )
        elif name in seen:
            causes.items.append(("FieldValueDuplicate", f"{path}.name", f'Duplicate value: "{name}"'))
        seen.add(str(name))
        if not isinstance(container, dict) or not container.get("image"):
            causes.required(f"{path}.image")


def _validate_pod(obj: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    _validate_pod_spec(obj.get("spec"), "spec", causes)


def _validate_workload(obj: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    """Deployments and ReplicaSets: selector, template and replica count."""
    spec = _mapping(obj.get("spec"))
    _validate_selector(spec, old, causes)
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.invalid("spec.replicas", replicas, "must be greater than or equal to 0")
    _validate_pod_spec(nested(spec, "template", "spec"), "spec.template.spec", causes)


def _validate_selector(spec: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    """A workload's selector: present, valid, matching its template's labels and never changed."""
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.required("spec.selector")
    else:
        try:
            chosen = LabelSelector.from_object(selector)
        except BadRequest as error:
            causes.invalid("spec.selector", selector, error.message)
        else:
            template_labels = nested(spec, "template", "metadata", "labels") or {}
            if not chosen.matches(template_labels):
                causes.invalid(
                    "spec.template.metadata.labels", template_labels, "`selector` does not match template `labels`"
                )
        if old is not None and nested(old, "spec", "selector") != selector:
            causes.invalid("spec.selector", selector, "field is immutable")


def _validate_job(obj: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    """Jobs: selector, a pod template that runs to completion (never restarted Always), counts, and a template
    that no update changes."""
    spec = _mapping(obj.get("spec"))
    _validate_selector(spec, old, causes)
    _validate_pod_spec(nested(spec, "template", "spec"), "spec.template.spec", causes)
    policy = nested(spec, "template", "spec", "restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.unsupported("spec.template.spec.restartPolicy", policy, ["OnFailure", "Never"])
    for key in ("backoffLimit", "parallelism", "completions", "activeDeadlineSeconds"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            causes.invalid(f"spec.{key}", value, "must be greater than or equal to 0")
    if old is not None and nested(old, "spec", "template") != spec.get("template"):
        causes.invalid("spec.template", spec.get("template"), "field is immutable")


def _validate_deployment(obj: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    _validate_workload(obj, old, causes)
    strategy = _mapping(nested(obj, "spec", "strategy"))
    kind = strategy.get("type")
    if kind not in ("RollingUpdate", "Recreate"):
        causes.unsupported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"])
    elif kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            causes.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    else:
        rolling = _mapping(strategy.get("rollingUpdate"))
        for key in ("maxSurge", "maxUnavailable"):
            if not _is_int_or_percent(rolling.get(key)):
                causes.invalid(
                    f"spec.strategy.rollingUpdate.{key}", rolling.get(key), "must be an integer or percentage"
                )
        if _is_zero(rolling.get("maxSurge")) and _is_zero(rolling.get("maxUnavailable")):
            causes.invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                rolling.get("maxUnavailable"),
                "may not be 0 when `maxSurge` is 0",
            )
    deadline = nested(obj, "spec", "progressDeadlineSeconds")
    min_ready = nested(obj, "spec", "minReadySeconds") or 0
    if isinstance(deadline, int) and deadline <= min_ready:
        causes.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")


def _is_int_or_percent(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and re.fullmatch(r"\d+%", value) is not None


def _is_zero(value: Any) -> bool:
    return value in (0, "0%")


def _validate_service(obj: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    spec = _mapping(obj.get("spec"))
    kind = spec.get("type")
    allowed = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if kind not in allowed:
        causes.unsupported("spec.type", kind, allowed)
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName":
        causes.required("spec.ports")
    for index, port in enumerate(ports):
        number = port.get("port") if isinstance(port, dict) else None
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.invalid(f"spec.ports[{index}].port", number, "must be between 1 and 65535, inclusive")
        if len(ports) > 1 and isinstance(port, dict) and not port.get("name"):
            causes.required(f"spec.ports[{index}].name")


def _validate_config_map(obj: JsonObject, old: JsonObject | None, causes: _Causes) -> None:
    for field in ("data", "binaryData"):
        for key in obj.get(field) or {}:
            if not _CONFIG_KEY.fullmatch(key):
                causes.invalid(
                    f"{field}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )


_VALIDATORS: dict[str, Callable[[JsonObject, JsonObject | None, _Causes], None]] = {
    "Pod": _validate_pod,
    "Deployment": _validate_deployment,
    "ReplicaSet": _validate_workload,
    "Job": _validate_job,
    "Service": _validate_service,
    "ConfigMap": _validate_config_map,
    "Secret": _validate_config_map,
}
