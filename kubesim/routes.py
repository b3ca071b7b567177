"""Request routing: API paths to discovery documents, registry verbs, watches, the service proxy and tables.

Transport-free: ``Router.route`` takes a parsed request and returns a response or a watch to stream."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from kubesim import discovery, tables
from kubesim.clock import Clock
from kubesim.objects import metadata, nested
from kubesim.proxy import ServiceHealth
from kubesim.registry import Registry
from kubesim.resources import GROUP_VERSIONS, NAMESPACES, SERVICES, ResourceType, find
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.status import ApiError, BadRequest, JsonObject, MethodNotAllowed, NotFound
from kubesim.watch import Subscription, WatchFilter

JSON = "application/json"


class PodLogs(Protocol):
    """Where a pod's log comes from: what its containers printed, as the node knows it."""

    def log_of(self, pod: JsonObject, container: str | None) -> str | None:
        """What the container printed, or None when the node has nothing (a long-running pod)."""
        ...


@dataclass(frozen=True)
class Request:
    """An HTTP request as the router needs it; header names are lower case."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """A complete answer."""

    code: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, code: int, document: Any, headers: Mapping[str, str] | None = None) -> Response:
        """A JSON answer."""
        return cls(code, json.dumps(document, separators=(",", ":")).encode(), JSON, dict(headers or {}))

    @classmethod
    def error(cls, error: ApiError) -> Response:
        """The ``Status`` answer for an error."""
        return cls.json(error.code, error.status(), error.headers)


@dataclass
class WatchStream:
    """A watch to stream: events from ``subscription`` as seen through ``view``, or only ``error``."""

    resource: ResourceType
    subscription: Subscription | None
    view: WatchFilter
    timeout: float | None = None
    bookmark_version: str | None = None  # send the initial-events-end bookmark after the backlog
    error: JsonObject | None = None
    table: Callable[[JsonObject], JsonObject] | None = None  # renders each object as a one-row Table


@dataclass(frozen=True)
class Target:
    """A resource URL taken apart."""

    resource: ResourceType
    namespace: str | None  # None: all namespaces, or a cluster-scoped resource
    name: str | None = None
    subresource: str | None = None
    watch: bool = False


def parse_target(path: str) -> Target | None:
    """Parse ``/api/v1/...`` or ``/apis/GROUP/VERSION/...``; ``None`` when ``path`` names no resource."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = bool(rest) and rest[0] == "watch"
    rest = rest[1:] if watch else rest
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in NAMESPACES.subresources:
        namespace, rest = rest[1], rest[2:]
    resource = find(group, version, rest[0])
    if resource is None or (namespace is not None and not resource.namespaced):
        raise NotFound("the server could not find the requested resource", details={})
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and subresource not in resource.subresources and subresource != "proxy":
        raise NotFound("the server could not find the requested resource", details={})
    return Target(resource, namespace if resource.namespaced else "", name, subresource, watch)


class Router:
    """Answers Kubernetes API requests."""

    def __init__(
        self,
        registry: Registry,
        health: ServiceHealth,
        clock: Clock,
        address: Callable[[], str],
        logs: PodLogs | None = None,
    ):
        self._registry = registry
        self._logs = logs
        self._health = health
        self._clock = clock
        self._address = address

    def route(self, request: Request) -> Response | WatchStream:
        """Answer ``request``."""
        path = request.path.rstrip("/") or "/"
        fixed = self._fixed(path, request)
        if fixed is not None:
            return fixed
        target = parse_target(path)
        if target is None:
            raise NotFound("the server could not find the requested resource", details={})
        if target.subresource == "proxy":
            return self._proxy(target)
        return self._resource(request, target)

    def _fixed(self, path: str, request: Request) -> Response | None:
        if request.method != "GET":
            return None
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain")
        documents: dict[str, Callable[[], JsonObject | None]] = {
            "/version": lambda: dict(discovery.SERVER_VERSION),
            "/api": lambda: discovery.api_versions(self._address()),
            "/apis": discovery.api_group_list,
            "/api/v1": lambda: discovery.resource_list("", "v1"),
        }
        for group, versions in GROUP_VERSIONS.items():
            if group:
                documents[f"/apis/{group}"] = partial(discovery.api_group, group)
                documents.update({f"/apis/{group}/{v}": partial(discovery.resource_list, group, v) for v in versions})
        if path in documents:
            document = documents[path]()
            return Response.json(200, document) if document is not None else None
        if path == "/openapi/v2":
            if "protobuf" in request.headers.get("accept", ""):
                return Response(200, discovery.openapi_v2_protobuf(), "application/octet-stream")
            return Response(200, discovery.openapi_v2_json(), JSON)
        return None

    def _proxy(self, target: Target) -> Response:
        if target.resource is not SERVICES or not target.name or target.namespace is None:
            raise NotFound("the server could not find the requested resource", details={})
        code, body = self._health.check(target.namespace, target.name)
        return Response.json(code, body)

    def _resource(self, request: Request, target: Target) -> Response | WatchStream:
        method, resource = request.method, target.resource
        if method == "GET":
            return self._read(request, target)
        if target.namespace is None and not (method == "DELETE" and target.name is None):
            raise MethodNotAllowed(f"{method} needs a namespace for {resource.qualified}")
        namespace = target.namespace or ""
        dry_run = request.query.get("dryRun") == "All"
        if method == "POST" and target.name is None:
            return Response.json(201, self._registry.create(resource, namespace, _json(request.body), dry_run=dry_run))
        if method == "DELETE":
            return self._delete(request, target)
        if target.name is None or method not in ("PUT", "PATCH"):
            raise MethodNotAllowed(f"{method} is not supported on this URL")
        subresource = "status" if target.subresource == "finalize" else target.subresource
        if method == "PUT":
            body = _json(request.body)
            answer = self._registry.update(
                resource, namespace, target.name, body, subresource=subresource, dry_run=dry_run
            )
        else:
            content_type = request.headers.get("content-type", "")
            answer = self._registry.patch(
                resource, namespace, target.name, content_type, request.body, subresource=subresource, dry_run=dry_run
            )
        return Response.json(200, answer)

    def _read(self, request: Request, target: Target) -> Response | WatchStream:
        resource = target.resource
        if target.watch or request.query.get("watch") in ("true", "1"):
            return self._watch(request, target)
        if target.name is None:
            labels = LabelSelector.parse(request.query.get("labelSelector"))
            fields = FieldSelector.parse(request.query.get("fieldSelector"), resource.kind)
            document = self._registry.list_objects(resource, target.namespace, labels, fields)
            return self._maybe_table(request, resource, document["items"], document)
        obj = self._registry.get(resource, target.namespace or "", target.name)
        if target.subresource == "scale":
            return Response.json(200, self._registry.scale_of(resource, obj))
        if target.subresource == "log":
            container = request.query.get("container")
            told = self._logs.log_of(obj, container) if self._logs is not None else None
            text = _log(obj, container) if told is None else _tail(told, request.query.get("tailLines"))
            return Response(200, text, "text/plain")
        return self._maybe_table(request, resource, [obj], obj)

    def _maybe_table(
        self, request: Request, resource: ResourceType, items: list[JsonObject], plain: JsonObject
    ) -> Response:
        if not tables.wants_table(request.headers.get("accept", "")):
            return Response.json(200, plain)
        version = str(self._registry.store.resource_version)
        include = request.query.get("includeObject", "Metadata")
        return Response.json(200, tables.render(resource, items, version, include, self._clock.now()))

    def _delete(self, request: Request, target: Target) -> Response:
        options = _json(request.body) if request.body.strip() else {}
        policy = request.query.get("propagationPolicy") or options.get("propagationPolicy")
        orphan = request.query.get("orphanDependents") or options.get("orphanDependents")
        if policy is None and orphan in (True, "true"):
            policy = "Orphan"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise BadRequest(f"unsupported propagationPolicy {policy!r}")
        dry_run = request.query.get("dryRun") == "All" or options.get("dryRun") == ["All"]
        resource = target.resource
        if target.name is not None:
            answer = self._registry.delete(
                resource, target.namespace or "", target.name, policy=policy, dry_run=dry_run
            )
            return Response.json(200, answer)
        labels = LabelSelector.parse(request.query.get("labelSelector"))
        fields = FieldSelector.parse(request.query.get("fieldSelector"), resource.kind)
        answer = self._registry.delete_collection(
            resource, target.namespace, labels, fields, policy=policy, dry_run=dry_run
        )
        return Response.json(200, answer)

    def _watch(self, request: Request, target: Target) -> WatchStream:
        resource, query = target.resource, request.query
        fields = FieldSelector.parse(query.get("fieldSelector"), resource.kind)
        if target.name is not None:
            fields = FieldSelector((*fields.terms, ("metadata.name", True, target.name)))
        view = WatchFilter(target.namespace or None, LabelSelector.parse(query.get("labelSelector")), fields)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        version = query.get("resourceVersion") or ""
        initial = query.get("sendInitialEvents") == "true"
        try:
            since = None if version in ("", "0") or initial else int(version)
        except ValueError as error:
            raise BadRequest(f"invalid resourceVersion {version!r}") from error
        try:
            subscription = self._registry.store.watch(resource.qualified, since)
        except ApiError as error:
            return WatchStream(resource, None, view, error=error.status())
        bookmark = str(subscription.version) if initial else None
        table = None
        if tables.wants_table(request.headers.get("accept", "")):
            include = query.get("includeObject", "Metadata")

            def table(obj: JsonObject) -> JsonObject:
                version = str(metadata(obj).get("resourceVersion", ""))
                return tables.render(resource, [obj], version, include, self._clock.now())

        return WatchStream(resource, subscription, view, timeout, bookmark, table=table)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as error:
        raise BadRequest(f"invalid JSON in request body: {error}") from error


def _tail(text: str, lines: str | None) -> bytes:
    """The last ``lines`` lines of a log (all of it without a number)."""
    if lines is None or not lines.isdigit():
        return text.encode()
    kept = text.splitlines(keepends=True)
    return "".join(kept[len(kept) - int(lines) :] if int(lines) else []).encode()


def _log(pod: JsonObject, container: str | None) -> bytes:
    lines = []
    for spec in nested(pod, "spec", "containers") or []:
        if container in (None, spec.get("name")):
            lines.append(f"kubesim: container {spec.get('name')} runs image {spec.get('image')}\n")
    return "".join(lines).encode()
