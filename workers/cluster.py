"""The adapter to a Kubernetes API: the official client configured from an Endpoint, generic verbs on any kind of
object found in a YAML document, and every failure translated into our error tree.

Requests go through `ApiClient.call_api` on the kinds' REST paths rather than the typed `*Api` classes or the
DynamicClient: objects come back exactly as the cluster sent them (no model round trip that drops fields), any kind
works from one small table plus API discovery for the rest, and no discovery cache is written to disk. The client's
own urllib3 retries are off: the K8S task decides when to ask again (see `workers/executors/k8s.py`), waiting at
least as long as a busy server's `Retry-After` asks.
"""

from __future__ import annotations

import copy
import datetime
import email.utils
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from orchestrator.endpoints import Endpoint
from orchestrator.errors import ClusterBusy, ClusterError, ClusterRefused, ClusterUnreachable
from orchestrator.rollout import owned_by
from workers.configuration import configuration_of

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"
TIMEOUT = (5.0, 30.0)  # seconds to connect, seconds to read an answer
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Metadata the API server owns: sent back it only makes a write conflict or fail, so applied documents drop it.
_SERVER_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


class ClusterThrottled(ClusterBusy):
    """The Kubernetes API answered 429 or 5xx and said, with `Retry-After`, how long to wait before asking again."""

    def __init__(self, message: str, status: int, reason: str, retry_after: float) -> None:
        super().__init__(message, status, reason)
        self.retry_after = retry_after  # seconds


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the API: its status, its JSON body, and the wait its `Retry-After` asked for, if any."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


@dataclass(frozen=True)
class Kind:
    """One kind of object and where the API serves it: `Deployment` in `apps/v1` at `deployments`.

    `built_in` kinds take strategic merge patches; custom resources only take JSON merge patches.
    """

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    built_in: bool = True

    def path(self, namespace: str, name: str | None = None) -> str:
        """The REST path of the collection in `namespace`, or of the object `name` in it."""
        root = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        scope = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{root}{scope}/{self.plural}" + (f"/{name}" if name else "")


def _kinds(api_version: str, namespaced: bool, *pairs: tuple[str, str]) -> list[Kind]:
    return [Kind(api_version, kind, plural, namespaced) for kind, plural in pairs]


BUILT_IN_KINDS: tuple[Kind, ...] = (
    *_kinds("v1", False, ("Namespace", "namespaces"), ("Node", "nodes"), ("PersistentVolume", "persistentvolumes")),
    *_kinds(
        "v1",
        True,
        ("Service", "services"),
        ("Secret", "secrets"),
        ("ConfigMap", "configmaps"),
        ("Pod", "pods"),
        ("ServiceAccount", "serviceaccounts"),
        ("PersistentVolumeClaim", "persistentvolumeclaims"),
        ("Endpoints", "endpoints"),
        ("Event", "events"),
        ("LimitRange", "limitranges"),
        ("ResourceQuota", "resourcequotas"),
    ),
    *_kinds(
        "apps/v1",
        True,
        ("Deployment", "deployments"),
        ("ReplicaSet", "replicasets"),
        ("StatefulSet", "statefulsets"),
        ("DaemonSet", "daemonsets"),
    ),
    *_kinds("batch/v1", True, ("Job", "jobs"), ("CronJob", "cronjobs")),
    *_kinds("networking.k8s.io/v1", True, ("Ingress", "ingresses"), ("NetworkPolicy", "networkpolicies")),
    *_kinds("autoscaling/v2", True, ("HorizontalPodAutoscaler", "horizontalpodautoscalers")),
    *_kinds("policy/v1", True, ("PodDisruptionBudget", "poddisruptionbudgets")),
    *_kinds("rbac.authorization.k8s.io/v1", True, ("Role", "roles"), ("RoleBinding", "rolebindings")),
    *_kinds(
        "rbac.authorization.k8s.io/v1",
        False,
        ("ClusterRole", "clusterroles"),
        ("ClusterRoleBinding", "clusterrolebindings"),
    ),
)
REPLICASETS = next(kind for kind in BUILT_IN_KINDS if kind.kind == "ReplicaSet")
PODS = next(kind for kind in BUILT_IN_KINDS if kind.kind == "Pod")


@dataclass(frozen=True)
class ObjectRef:
    """One object on the cluster: its kind, namespace ("" for cluster-scoped kinds) and name."""

    kind: Kind
    namespace: str
    name: str

    @property
    def path(self) -> str:
        return self.kind.path(self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind.kind} {self.name}"


@dataclass(frozen=True)
class Applied:
    """What an apply did: the object as the cluster now has it, as it was before (None: created), and the change
    in kubectl's words (`created`, `configured`, `unchanged`)."""

    object: dict[str, Any]
    before: dict[str, Any] | None
    change: str


def desired_state(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document as it is sent to the cluster: without status and the metadata the server owns."""
    body = {key: copy.deepcopy(value) for key, value in document.items() if key != "status"}
    meta = body.get("metadata")
    if isinstance(meta, dict):
        body["metadata"] = {key: value for key, value in meta.items() if key not in _SERVER_METADATA}
    return body


def contains(live: Any, wanted: Any) -> bool:
    """Whether the live object already holds every value of `wanted` (what an apply would write).

    Fields the server defaulted are ignored; a `null` in `wanted` (a merge patch's delete) holds when the field is
    absent. Lists must match item by item.
    """
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            live.get(key) is None if value is None else key in live and contains(live[key], value)
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(contains, live, wanted))
    return bool(live == wanted) and isinstance(live, bool) == isinstance(wanted, bool)


class ClusterClient:
    """One Kubernetes API, reached through the official client. Thread-safe."""

    def __init__(self, api: ApiClient, *, timeout: tuple[float, float] = TIMEOUT) -> None:
        # The client is typed only in part; our side of this boundary is.
        self._api: Any = api
        self._timeout = timeout
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], Kind] = {(kind.api_version, kind.kind): kind for kind in BUILT_IN_KINDS}

    @classmethod
    def connect(cls, endpoint: Endpoint, *, timeout: tuple[float, float] = TIMEOUT) -> ClusterClient:
        """A client for an endpoint: its URL with token and CA data (or insecure), or its kubeconfig."""
        configuration = configuration_of(endpoint)
        configuration.retries = False  # no hidden retries: ours answer Waiting instead of sleeping in a worker
        configuration.client_go_retries = False
        return cls(ApiClient(configuration), timeout=timeout)

    @property
    def url(self) -> str:
        """The API server's URL, as messages name it."""
        return str(self._api.configuration.host)

    def close(self) -> None:
        """Close idle connections; requests in flight finish."""
        self._api.close()

    # --- naming objects ---

    def kind(self, api_version: str, kind: str) -> Kind:
        """Where the cluster serves `kind` of `api_version`: the built-in table, else the API's discovery."""
        with self._lock:
            known = self._kinds.get((api_version, kind))
        if known is not None:
            return known
        found = self._discover(api_version, kind)
        with self._lock:
            self._kinds[(api_version, kind)] = found
        return found

    def ref(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> ObjectRef:
        """The object `name` of a kind, in `namespace` (default: `default`) when the kind is namespaced."""
        found = self.kind(api_version, kind)
        return ObjectRef(found, (namespace or DEFAULT_NAMESPACE) if found.namespaced else "", name)

    def ref_of(self, document: Mapping[str, Any], namespace: str | None = None) -> ObjectRef:
        """The object a document describes; `namespace` is the default for a document that names none."""
        meta = document.get("metadata") or {}
        in_document = meta.get("namespace") or namespace
        return self.ref(str(document["apiVersion"]), str(document["kind"]), str(meta["name"]), in_document)

    # --- verbs ---

    def read(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The object as the cluster has it, or None when it does not exist."""
        return self._unless_missing("GET", ref, f"get {ref}")

    def get(self, ref: ObjectRef) -> dict[str, Any]:
        """The object; a ClusterError with status 404 when it does not exist."""
        found = self.read(ref)
        if found is None:
            raise ClusterError(f"{ref} does not exist on {self.url}", 404, "NotFound")
        return found

    def create(self, ref: ObjectRef, document: Mapping[str, Any]) -> dict[str, Any]:
        """Create the object; a ClusterError with reason AlreadyExists when its name is taken."""
        body = desired_state(document)
        if ref.namespace:
            body.setdefault("metadata", {})["namespace"] = ref.namespace
        return self._request("POST", ref.kind.path(ref.namespace), f"create {ref}", ref, body=body)

    def apply(self, ref: ObjectRef, document: Mapping[str, Any]) -> Applied:
        """Create the object, or patch it to hold the document (`kubectl apply` without its three-way part).

        Idempotent: when the live object already holds every value of the document nothing is written, so its
        resourceVersion and generation stay.
        """
        body = desired_state(document)
        live = self.read(ref)
        if live is None:
            try:
                return Applied(self.create(ref, body), None, "created")
            except ClusterError as error:
                if error.reason != "AlreadyExists":
                    raise
                live = self.get(ref)  # created by someone else in between: patch it like any other
        if contains(live, body):
            return Applied(live, live, "unchanged")
        content_type = STRATEGIC_MERGE if ref.kind.built_in else MERGE
        patched = self._request("PATCH", ref.path, f"patch {ref}", ref, body=body, content_type=content_type)
        same = _version(patched) == _version(live)
        return Applied(patched, live, "unchanged" if same else "configured")

    def delete(self, ref: ObjectRef) -> dict[str, Any] | None:
        """Delete the object and, in the background, what it owns; None when it was already gone."""
        return self._unless_missing("DELETE", ref, f"delete {ref}", query={"propagationPolicy": "Background"})

    def json_patch(self, ref: ObjectRef, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply an RFC 6902 JSON patch to the object."""
        return self._request("PATCH", ref.path, f"patch {ref}", ref, body=operations, content_type=JSON_PATCH)

    def replica_sets(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The ReplicaSets a Deployment controls."""
        found = self._select(REPLICASETS, deployment)
        return [dict(item) for item in owned_by(deployment, found)]

    def pods(self, workload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods matching a Deployment's (or a Job's) selector."""
        return self._select(PODS, workload)

    def pod_log(self, namespace: str, name: str, tail_lines: int) -> str:
        """The last `tail_lines` lines a pod's (first) container printed; "" when the pod is gone."""
        what = f"read the log of pod {namespace}/{name}"
        path = f"{PODS.path(namespace, name)}/log"
        status, data, headers = self._send_raw("GET", path, what, query={"tailLines": str(tail_lines)}, accept="*/*")
        if 200 <= status < 300:
            return data.decode(errors="replace")
        if status == 404:
            return ""
        wait = retry_after(headers.get("Retry-After"), headers.get("Date"), time.time())
        answer = Answer(status, _decode(data), wait if status == 429 or status >= 500 else None)
        raise _failure(f"{what} on {self.url}", answer, None)

    # --- plumbing ---

    def _select(self, kind: Kind, workload: Mapping[str, Any]) -> list[dict[str, Any]]:
        meta = workload.get("metadata") or {}
        labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
        what = f"list {kind.plural} of {workload.get('kind') or 'Deployment'} {namespace}/{meta.get('name')}"
        listing = self._request("GET", kind.path(namespace), what, query={"labelSelector": selector})
        return [item for item in listing.get("items") or [] if isinstance(item, dict)]

    def _discover(self, api_version: str, kind: str) -> Kind:
        root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = self._request("GET", root, f"look up kind {kind} in {api_version}")
        except ClusterError as error:
            if error.status != 404:
                raise
            listing = {}
        for entry in listing.get("resources") or []:
            if isinstance(entry, dict) and entry.get("kind") == kind and "/" not in str(entry.get("name")):
                return Kind(api_version, kind, str(entry["name"]), bool(entry.get("namespaced")), built_in=False)
        raise ClusterError(
            f"unknown kind {kind} (apiVersion {api_version}): the cluster at {self.url} does not serve it",
            404,
            "UnknownKind",
        )

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        ref: ObjectRef | None = None,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One API request and its JSON answer; an answer outside 2xx raises its ClusterError."""
        answer = self._send(method, path, what, query=query, body=body, content_type=content_type)
        if 200 <= answer.status < 300:
            return answer.body
        raise _failure(f"{what} on {self.url}", answer, ref)

    def _unless_missing(self, method: str, ref: ObjectRef, what: str, **options: Any) -> dict[str, Any] | None:
        """Like `_request` on the object itself, but None when the answer says that the object does not exist."""
        answer = self._send(method, ref.path, what, **options)
        if 200 <= answer.status < 300:
            return answer.body
        details = answer.body.get("details")
        if answer.status == 404 and isinstance(details, Mapping) and details.get("name") == ref.name:
            return None
        raise _failure(f"{what} on {self.url}", answer, ref)

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Answer:
        status, data, headers = self._send_raw(method, path, what, query=query, body=body, content_type=content_type)
        body = _decode(data)
        if status != 429 and status < 500:
            return Answer(status, body)
        return Answer(status, body, retry_after(headers.get("Retry-After"), headers.get("Date"), time.time()))

    def _send_raw(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> tuple[int, bytes, Any]:
        """One API request: its status, raw body and headers."""
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        log.debug("%s %s%s", method, self.url, path)  # never the headers: they carry the token
        try:
            request = self._api.param_serialize(
                method,
                path,
                query_params=dict(query) if query else None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            data = response.read()
        except (urllib3.exceptions.HTTPError, ApiException, OSError) as error:
            raise ClusterUnreachable(f"{what} on {self.url}: {_unreachable(error, self._timeout)}") from error
        return int(response.status), data, response.headers


def _decode(data: bytes) -> dict[str, Any]:
    """An answer's JSON object; anything else (a proxy's HTML page) becomes its text as a message."""
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return {"message": data.decode(errors="replace").strip()[:200]}
    return answer if isinstance(answer, dict) else {"message": str(answer)[:200]}


def retry_after(value: str | None, date: str | None, now: float) -> float | None:
    """The seconds a `Retry-After` header asks to wait (a number of seconds, or an HTTP-date); None when it has none.

    An HTTP-date is measured from the answer's own `Date` when it has one, so a worker whose clock is off still waits
    as long as the server meant; `now`, the worker's wall clock, is only the fallback.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        target, reference = _timestamp(text), _timestamp(date)
        if target is None:
            return None
        return max(target - (now if reference is None else reference), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _timestamp(http_date: str | None) -> float | None:
    """The POSIX time of an HTTP-date (always GMT), or None when it is not one."""
    try:
        parsed = email.utils.parsedate_to_datetime(http_date or "")
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or datetime.UTC).timestamp()


def _version(obj: Mapping[str, Any]) -> object:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _unreachable(error: Exception, timeout: tuple[float, float]) -> str:
    """Why no answer came, in a few words."""
    text = str(error.reason if isinstance(error, ApiException) else error).strip()
    # urllib3 prefixes the connection's repr ("HTTPConnection(host=..., port=...): ..."): the URL says it already.
    text = text.split("): ", 1)[-1].replace("\n", " ")
    if isinstance(error, urllib3.exceptions.NameResolutionError):
        return f"the host name does not resolve ({text})"
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return f"cannot connect ({text})"
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        return f"no connection within {timeout[0]:g} s"
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within {timeout[1]:g} s"
    if isinstance(error, ApiException | urllib3.exceptions.SSLError):
        return f"TLS failed ({text})"
    return f"the connection failed ({type(error).__name__}: {text})"


def _failure(where: str, answer: Answer, ref: ObjectRef | None) -> ClusterError:
    """The error for an answer outside 2xx, from its HTTP status, its `Status` body and its `Retry-After`."""
    status, body = answer.status, answer.body
    message = str(body.get("message") or "").strip()
    reason = str(body.get("reason") or "")
    found = body.get("details")
    details: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    said = f": {message}" if message else ""
    if status == 401:
        return ClusterRefused(f"{where}: the endpoint's token was refused (401)", status, reason or "Unauthorized")
    if status == 403:
        return ClusterRefused(f"{where}: the endpoint's credentials may not do this (403){said}", status, reason)
    if status == 429 or status >= 500:
        busy = f"{where}: the API server is busy or failing ({status} {reason}){said}"
        if answer.retry_after is not None:
            return ClusterThrottled(busy, status, reason, answer.retry_after)
        return ClusterBusy(busy, status, reason)
    if status == 404 and ref is not None and details.get("kind") == "namespaces" and ref.kind.kind != "Namespace":
        return ClusterError(f"{where}: namespace {ref.namespace} does not exist", status, reason or "NotFound")
    if status == 409 and reason == "AlreadyExists":
        return ClusterError(f"{where}: it already exists", status, reason)
    code = f"{status} {reason}".strip()
    return ClusterError(f"{where}: {message or 'failed'} ({code})", status, reason)


class ClusterClients:
    """The clients of one worker process, one per endpoint, rebuilt when the endpoint changes. Thread-safe."""

    def __init__(self, connect: Callable[[Endpoint], ClusterClient] = ClusterClient.connect) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[object, ClusterClient]] = {}

    def client(self, endpoint: Endpoint) -> ClusterClient:
        """The client of an endpoint; a new one when the endpoint was updated since the last."""
        version = endpoint.updated_at
        with self._lock:
            cached = self._clients.get(endpoint.id)
            if cached is not None and cached[0] == version:
                return cached[1]
            client = self._connect(endpoint)
            self._clients[endpoint.id] = (version, client)
        if cached is not None:
            cached[1].close()
        return client

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for _, client in clients:
            client.close()
