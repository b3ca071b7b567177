"""The Kubernetes YAML of an application: what it holds, which objects one release is made of, and rewritten copies.

Reading collects every problem (with the path `kubernetesYaml` or `service`) instead of stopping at the first.
Rewriting never changes the objects it is given: each rewrite returns a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.decoding import dump_yaml_documents
from orchestrator.errors import BadRequest, Problem
from orchestrator.manifests import read_objects

Obj = dict[str, Any]

YAML_FIELD = "kubernetesYaml"
SERVICE_FIELD = "service"
# A YAML alias is one value however often it is used, but every copy made of it here is not: a small text can
# stand for a huge tree, so manifests past this many values are refused before anything is copied.
MAX_VALUES = 100_000
DEFAULT_NAMESPACE = "default"
# Label keys the template adds. Neither holds a dot or a slash: a `${...}` binding reads them as one path segment
# (`spec.selector.rollway-release`), which a key such as `rollway.io/release` could not be.
RELEASE_LABEL = "rollway-release"
TRACK_LABEL = "rollway-track"
# Metadata the API server owns: kept in a copy it would only make a write conflict.
_SERVER_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


def name_of(obj: Mapping[str, Any]) -> str:
    """`metadata.name`."""
    return str(_mapping(obj.get("metadata")).get("name") or "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    """`metadata.namespace`, or `default` as Kubernetes reads an object without one ("" for a Namespace)."""
    if obj.get("kind") == "Namespace":
        return ""
    return str(_mapping(obj.get("metadata")).get("namespace") or DEFAULT_NAMESPACE)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _labels(value: object) -> dict[str, str]:
    """A label map with its values as text (YAML reads `version: 2` as a number)."""
    return {str(key): str(item) for key, item in _mapping(value).items()}


def selector_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A Service's `spec.selector`."""
    return _labels(_mapping(service.get("spec")).get("selector"))


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    """The labels of a Deployment's pods (`spec.template.metadata.labels`)."""
    template = _mapping(_mapping(deployment.get("spec")).get("template"))
    return _labels(_mapping(template.get("metadata")).get("labels"))


def containers_of(deployment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers of a Deployment's pods."""
    template = _mapping(_mapping(deployment.get("spec")).get("template"))
    found = _mapping(template.get("spec")).get("containers")
    return [item for item in found if isinstance(item, Mapping)] if isinstance(found, list) else []


def replicas_of(deployment: Mapping[str, Any]) -> int:
    """`spec.replicas`, 1 when absent (as Kubernetes defaults it)."""
    value = _mapping(deployment.get("spec")).get("replicas")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 1


def ports_of(service: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A Service's `spec.ports`."""
    found = _mapping(service.get("spec")).get("ports")
    return [item for item in found if isinstance(item, Mapping)] if isinstance(found, list) else []


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a (non-empty) Service selector picks pods with these labels."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True)
class Manifest:
    """The objects of a Kubernetes YAML, in document order."""

    objects: tuple[Obj, ...]

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects if obj.get("kind") == kind]

    @property
    def namespaces(self) -> list[Obj]:
        return self.of_kind("Namespace")

    @property
    def services(self) -> list[Obj]:
        return self.of_kind("Service")

    @property
    def deployments(self) -> list[Obj]:
        return [obj for obj in self.of_kind("Deployment") if str(obj.get("apiVersion")).startswith("apps/")]

    @property
    def secrets(self) -> list[Obj]:
        return self.of_kind("Secret")

    def deployments_selected_by(self, service: Mapping[str, Any]) -> list[Obj]:
        """The Deployments whose pods a Service sends traffic to (same namespace, selector matches)."""
        selector = selector_of(service)
        return [
            deployment
            for deployment in self.deployments
            if namespace_of(deployment) == namespace_of(service) and selects(selector, pod_labels(deployment))
        ]


def parse_manifest(text: object) -> tuple[Manifest | None, list[Problem]]:
    """The manifest in a YAML text, or None and the problems that keep it from being read."""
    if not isinstance(text, str) or not text.strip():
        return None, [Problem(YAML_FIELD, "is required: the Kubernetes YAML of the application (text)")]
    objects, problems = read_objects(text, YAML_FIELD, MAX_VALUES)
    if problems:
        return None, problems
    return Manifest(tuple(objects)), _duplicates(objects)


def read_manifest(text: object) -> Manifest:
    """The manifest in a YAML text; raises BadRequest listing every problem."""
    manifest, problems = parse_manifest(text)
    if problems or manifest is None:
        raise BadRequest(f"the Kubernetes YAML has {len(problems)} problem(s)", problems)
    return manifest


def _duplicates(documents: Iterable[Obj]) -> list[Problem]:
    seen: set[tuple[str, str, str]] = set()
    problems = []
    for obj in documents:
        key = (str(obj["kind"]), namespace_of(obj), name_of(obj))
        if key in seen:
            where = f" in namespace '{key[1]}'" if key[1] else ""
            problems.append(Problem(YAML_FIELD, f"defines {key[0]} '{key[2]}'{where} twice"))
        seen.add(key)
    return problems


@dataclass(frozen=True)
class Application:
    """What one release is made of: the Service traffic goes through, the Deployment it selects, and the rest."""

    service: Obj
    deployment: Obj
    namespaces: tuple[Obj, ...]
    secrets: tuple[Obj, ...]
    others: tuple[Obj, ...]

    @property
    def namespace(self) -> str:
        return namespace_of(self.deployment)

    @property
    def service_name(self) -> str:
        return name_of(self.service)

    @property
    def deployment_name(self) -> str:
        return name_of(self.deployment)

    @property
    def replicas(self) -> int:
        return replicas_of(self.deployment)

    @property
    def port(self) -> str:
        """The Service port the health check goes through: the first one, by name when it has one."""
        first = ports_of(self.service)[0]
        return str(first.get("name") or first.get("port"))

    @property
    def progress_deadline(self) -> int:
        """Seconds Kubernetes gives a rollout before it reports ProgressDeadlineExceeded."""
        value = _mapping(self.deployment.get("spec")).get("progressDeadlineSeconds")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 600


def find_application(manifest: Manifest, service: str) -> tuple[Application | None, list[Problem]]:
    """The application released through the Service named `service`, or None and why it cannot be."""
    problems = []
    if not manifest.deployments:
        problems.append(Problem(YAML_FIELD, "holds no Deployment (apps/v1): the template releases a Deployment"))
    found = [obj for obj in manifest.services if name_of(obj) == service]
    if not found:
        known = ", ".join(sorted(name_of(obj) for obj in manifest.services)) or "none"
        problems.append(Problem(SERVICE_FIELD, f"'{service}' is not a Service of the YAML (its Services: {known})"))
    elif len(found) > 1:
        problems.append(Problem(SERVICE_FIELD, f"the YAML has a Service '{service}' in more than one namespace"))
    if problems:
        return None, problems
    chosen = found[0]
    problems += _service_problems(chosen)
    deployments = manifest.deployments_selected_by(chosen) if not problems else []
    if not problems and not deployments:
        wanted = ", ".join(f"{key}={value}" for key, value in selector_of(chosen).items())
        problems.append(
            Problem(SERVICE_FIELD, f"Service '{service}' selects no Deployment of the YAML (its selector: {wanted})")
        )
    elif len(deployments) > 1:
        names = ", ".join(name_of(obj) for obj in deployments)
        problems.append(Problem(SERVICE_FIELD, f"Service '{service}' selects more than one Deployment ({names})"))
    if problems:
        return None, problems
    deployment = deployments[0]
    if not containers_of(deployment):
        return None, [Problem(YAML_FIELD, f"Deployment '{name_of(deployment)}' has no containers")]
    released = (chosen, deployment)
    others = tuple(
        obj
        for obj in manifest.objects
        if obj.get("kind") not in ("Namespace", "Secret") and not any(obj is item for item in released)
    )
    return Application(chosen, deployment, tuple(manifest.namespaces), tuple(manifest.secrets), others), []


def _service_problems(service: Mapping[str, Any]) -> list[Problem]:
    name = name_of(service)
    problems = []
    if not selector_of(service):
        problems.append(Problem(SERVICE_FIELD, f"Service '{name}' has no selector: it sends traffic to no pods"))
    if not ports_of(service):
        problems.append(Problem(SERVICE_FIELD, f"Service '{name}' has no ports: the health check goes through one"))
    return problems


# -- rewritten copies


def _copy(obj: Mapping[str, Any]) -> Obj:
    """A deep copy without status and the metadata the API server owns."""
    body = {key: copy.deepcopy(value) for key, value in obj.items() if key != "status"}
    meta = body.get("metadata")
    if isinstance(meta, dict):
        body["metadata"] = {key: value for key, value in meta.items() if key not in _SERVER_METADATA}
    return body


def _at(obj: Obj, *path: str) -> Obj:
    """The mapping at `path`, made (or replaced, if not a mapping) as needed."""
    current = obj
    for key in path:
        if not isinstance(current.get(key), dict):
            current[key] = {}
        current = current[key]
    return current


def released_deployment(
    deployment: Mapping[str, Any],
    image: str,
    name: str | None = None,
    replicas: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    """A Deployment running `image` in its first container, optionally renamed, rescaled and relabelled.

    Only the first container changes: it is the application, and the others (sidecars) keep their images.
    Added labels go on the pods and into the selector too, so that a renamed copy selects its own pods only.
    """
    copied = _copy(deployment)
    containers = _at(copied, "spec", "template", "spec").get("containers")
    if isinstance(containers, list) and containers and isinstance(containers[0], dict):
        containers[0]["image"] = image
    if name is not None:
        _at(copied, "metadata")["name"] = name
    if replicas is not None:
        _at(copied, "spec")["replicas"] = replicas
    if labels:
        _at(copied, "metadata", "labels").update(labels)
        _at(copied, "spec", "selector", "matchLabels").update(labels)
        _at(copied, "spec", "template", "metadata", "labels").update(labels)
    return copied


def with_selector(service: Mapping[str, Any], labels: Mapping[str, str]) -> Obj:
    """A Service whose selector also requires `labels`."""
    copied = _copy(service)
    _at(copied, "spec", "selector").update(labels)
    return copied


def preview_service(service: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> Obj:
    """A ClusterIP copy of a Service under another name, selecting `labels` too.

    Only its ports (without node ports) and selector are kept: a copy of a NodePort or LoadBalancer Service
    would ask for node ports or a load balancer of its own.
    """
    copied = _copy(service)
    _at(copied, "metadata")["name"] = name
    ports = [{key: value for key, value in port.items() if key != "nodePort"} for port in ports_of(service)]
    copied["spec"] = {"type": "ClusterIP", "ports": ports, "selector": {**selector_of(service), **labels}}
    return copied


def renamed(obj: Mapping[str, Any], name: str) -> Obj:
    """A copy under another name."""
    copied = _copy(obj)
    _at(copied, "metadata")["name"] = name
    return copied


def reference(obj: Mapping[str, Any]) -> Obj:
    """What names an object for a GET or DELETE: its apiVersion, kind, name and namespace."""
    metadata = {"name": name_of(obj)}
    namespace = _mapping(obj.get("metadata")).get("namespace")
    if namespace:
        metadata["namespace"] = str(namespace)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": metadata}


def dump(objects: Iterable[Mapping[str, Any]]) -> str:
    """Objects as one multi-document YAML text, in their own key order."""
    return dump_yaml_documents([dict(obj) for obj in objects])


# -- what a YAML holds, as `POST /templates/cd/process` answers


def describe(manifest: Manifest) -> dict[str, Any]:
    """The namespaces, services, deployments and secrets of a manifest (and its other objects), by name."""
    defined = [name_of(obj) for obj in manifest.namespaces]
    used = sorted({namespace_of(obj) for obj in manifest.objects if obj.get("kind") != "Namespace"} - set(defined))
    return {
        "namespaces": [{"name": name, "defined": True} for name in defined]
        + [{"name": name, "defined": False} for name in used],
        "services": [_service_view(manifest, obj) for obj in manifest.services],
        "deployments": [_deployment_view(manifest, obj) for obj in manifest.deployments],
        "secrets": [
            {"name": name_of(obj), "namespace": namespace_of(obj), "type": str(obj.get("type") or "Opaque")}
            for obj in manifest.secrets
        ],
        "otherObjects": [
            {"kind": obj.get("kind"), "name": name_of(obj), "namespace": namespace_of(obj)}
            for obj in manifest.objects
            if obj.get("kind") not in ("Namespace", "Service", "Secret")
            and not any(obj is deployment for deployment in manifest.deployments)
        ],
    }


def _service_view(manifest: Manifest, service: Obj) -> dict[str, Any]:
    return {
        "name": name_of(service),
        "namespace": namespace_of(service),
        "type": str(_mapping(service.get("spec")).get("type") or "ClusterIP"),
        "ports": [
            {
                "name": port.get("name"),
                "port": port.get("port"),
                "targetPort": port.get("targetPort", port.get("port")),
                "protocol": port.get("protocol", "TCP"),
            }
            for port in ports_of(service)
        ],
        "selector": selector_of(service),
        "deployments": [name_of(obj) for obj in manifest.deployments_selected_by(service)],
    }


def _deployment_view(manifest: Manifest, deployment: Obj) -> dict[str, Any]:
    return {
        "name": name_of(deployment),
        "namespace": namespace_of(deployment),
        "replicas": replicas_of(deployment),
        "containers": [{"name": item.get("name"), "image": item.get("image")} for item in containers_of(deployment)],
        "labels": pod_labels(deployment),
        "services": [
            name_of(service)
            for service in manifest.services
            if any(obj is deployment for obj in manifest.deployments_selected_by(service))
        ],
    }
