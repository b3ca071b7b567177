"""The API verbs over the store (create, get, list, update, patch, delete, the status and scale subresources),
with the API server's metadata rules, optimistic concurrency and garbage-collection cascade."""

from __future__ import annotations

import uuid
from typing import Any

from kubesim.clock import Clock, timestamp
from kubesim.defaults import apply_defaults
from kubesim.network import Network
from kubesim.objects import (
    deep_copy,
    labels_of,
    metadata,
    name_of,
    namespace_of,
    owner_uids,
    pruned,
    random_suffix,
    resource_version_of,
    uid_of,
)
from kubesim.patch import APPLY, apply_patch, parse_patch
from kubesim.resources import NAMESPACES, RESOURCES, ResourceType
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.status import (
    BadRequest,
    Forbidden,
    JsonObject,
    already_exists,
    conflict,
    not_found,
    qualified_resource,
    success,
)
from kubesim.store import Store
from kubesim.strategies import Strategies
from kubesim.validation import validate

# How long a deleted namespace stays Terminating before its contents go: clients deleting a namespace and then
# its objects (kubectl delete -f) find them still there, as on a real cluster.
NAMESPACE_GRACE = 1.0
_ANSWERS_DELETED_OBJECT = frozenset({"Pod", "Service", "Namespace"})
# Metadata the server owns: a write cannot change it.
_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name")


class Registry:
    """REST semantics shared by HTTP clients and the simulated controllers."""

    def __init__(self, store: Store, clock: Clock, network: Network):
        self.store = store
        self.clock = clock
        self.strategies = Strategies(network)
        self._terminating: dict[str, float] = {}  # namespace uid -> when its deletion was asked

    def get(self, resource: ResourceType, namespace: str, name: str) -> JsonObject:
        """One object, or ``NotFound``."""
        found = self.store.get(resource.qualified, namespace, name)
        if found is None:
            raise not_found(resource.plural, resource.group, name)
        return found

    def select(
        self,
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
    ) -> list[JsonObject]:
        """The objects in ``namespace`` (all namespaces for ``None``) matching both selectors."""
        chosen_labels = label_selector or LabelSelector()
        chosen_fields = field_selector or FieldSelector()
        return [
            item
            for item in self.store.list(resource.qualified, namespace)
            if chosen_labels.matches(labels_of(item)) and chosen_fields.matches(item)
        ]

    def list_objects(
        self,
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
    ) -> JsonObject:
        """A ``…List`` document; items carry no kind or apiVersion, as on a real server."""
        with self.store.lock:
            items = self.select(resource, namespace, label_selector, field_selector)
            version = self.store.resource_version
        stripped = [{key: value for key, value in item.items() if key not in ("kind", "apiVersion")} for item in items]
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(version)},
            "items": stripped,
        }

    def create(self, resource: ResourceType, namespace: str, body: Any, *, dry_run: bool = False) -> JsonObject:
        """Store a new object: name generation, uid, timestamps, defaults and validation."""
        obj = self._decode(resource, body, namespace)
        meta = metadata(obj)
        with self.store.lock:
            if resource.namespaced:
                self._require_open_namespace(resource, namespace, name_of(obj))
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{random_suffix()}"
            name = name_of(obj)
            if name and self.store.get(resource.qualified, namespace, name) is not None:
                raise already_exists(resource.plural, resource.group, name)
            for key in ("resourceVersion", "deletionTimestamp", "generation"):
                meta.pop(key, None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp(self.clock.now()))
            self.strategies.prepare_create(resource, obj)
            apply_defaults(resource.kind, obj)
            validate(resource, obj)
            return obj if dry_run else self.store.put(resource.qualified, obj)

    def update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JsonObject:
        """PUT: replace the object (or only its status), refusing a stale ``resourceVersion`` with 409."""
        with self.store.lock:
            old = self.get(resource, namespace, name)
            if subresource == "scale":
                return self._write_scale(resource, old, body, dry_run)
            new = self._decode(resource, body, namespace)
            if name_of(new) != name:
                raise BadRequest(f"the name of the object ({name_of(new)}) does not match the name on the URL ({name})")
            self._check_version(resource, old, new)
            return self._replace(resource, old, new, subresource, dry_run)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JsonObject:
        """PATCH in any of the supported content types; an apply patch of a missing object creates it."""
        patch = parse_patch(content_type, body)
        with self.store.lock:
            found = self.store.get(resource.qualified, namespace, name)
            if found is None:
                if content_type.startswith(APPLY) and subresource is None:
                    return self.create(resource, namespace, patch, dry_run=dry_run)
                raise not_found(resource.plural, resource.group, name)
            if subresource == "scale":
                patched = apply_patch(content_type, self.scale_of(resource, found), patch, "Scale")
                return self._write_scale(resource, found, patched, dry_run)
            # The patch functions share unpatched subtrees with their input; a copy keeps `found` the stored state,
            # which the generation count (and the no-op check) compare against.
            new = apply_patch(content_type, deep_copy(found), patch, resource.kind)
            self._check_version(resource, found, new)
            return self._replace(resource, found, new, subresource, dry_run)

    def delete(
        self, resource: ResourceType, namespace: str, name: str, *, policy: str | None = None, dry_run: bool = False
    ) -> JsonObject:
        """Delete an object and, unless orphaned, its dependents.

        Pods, services and namespaces answer the deleted object (marked with a ``deletionTimestamp``), as their
        real registries do; every other kind answers a ``Success`` status.
        """
        with self.store.lock:
            found = self.get(resource, namespace, name)
            if resource is NAMESPACES:
                return found if dry_run else self._terminate(found)
            if not dry_run:
                self._delete_tree(resource, found, policy or "Background")
            if resource.kind not in _ANSWERS_DELETED_OBJECT:
                return success(resource.plural, resource.group, name, uid_of(found))
            metadata(found)["deletionTimestamp"] = timestamp(self.clock.now())
            return found

    def finalize_namespaces(self) -> None:
        """The namespace controller's part: empty each terminating namespace, then remove it."""
        with self.store.lock:
            now = self.clock.now()
            for namespace in self.store.list(NAMESPACES.qualified):
                since = self._terminating.get(uid_of(namespace))
                if since is not None and now >= since + NAMESPACE_GRACE:
                    del self._terminating[uid_of(namespace)]
                    self._delete_tree(NAMESPACES, namespace, "Background")

    def _terminate(self, namespace: JsonObject) -> JsonObject:
        """Mark a namespace Terminating; its contents go on the controllers' next pass, as on a real cluster."""
        if metadata(namespace).get("deletionTimestamp"):
            return namespace
        self._terminating[uid_of(namespace)] = self.clock.now()
        metadata(namespace)["deletionTimestamp"] = timestamp(self.clock.now())
        namespace["status"] = {**(namespace.get("status") or {}), "phase": "Terminating"}
        return self.store.put(NAMESPACES.qualified, namespace)

    def delete_collection(
        self,
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
        *,
        policy: str | None = None,
        dry_run: bool = False,
    ) -> JsonObject:
        """Delete every selected object; answers the list of what was deleted."""
        with self.store.lock:
            doomed = self.select(resource, namespace, label_selector, field_selector)
            if not dry_run:
                for obj in doomed:
                    if self.store.get(resource.qualified, namespace_of(obj), name_of(obj)) is not None:
                        self._delete_tree(resource, obj, policy or "Background")
            return {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": doomed,
            }

    def scale_of(self, resource: ResourceType, obj: JsonObject) -> JsonObject:
        """The ``autoscaling/v1`` Scale view of a Deployment or ReplicaSet."""
        meta = metadata(obj)
        selector = LabelSelector.from_object((obj.get("spec") or {}).get("selector"))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas") or 0)},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas") or 0), "selector": str(selector)},
        }

    def write_status(self, resource: ResourceType, obj: JsonObject) -> JsonObject:
        """A controller's status (and annotation) write; nothing is stored when nothing changed."""
        with self.store.lock:
            old = self.get(resource, namespace_of(obj), name_of(obj))
            return self._replace(resource, old, deep_copy(obj), "status", dry_run=False)

    def _write_scale(self, resource: ResourceType, old: JsonObject, scale: Any, dry_run: bool) -> JsonObject:
        if not isinstance(scale, dict) or not isinstance((scale.get("spec") or {}).get("replicas"), int):
            raise BadRequest("a Scale must carry an integer spec.replicas")
        self._check_version(resource, old, scale)
        new = deep_copy(old)
        new["spec"]["replicas"] = scale["spec"]["replicas"]
        return self.scale_of(resource, self._replace(resource, old, new, None, dry_run))

    def _replace(
        self, resource: ResourceType, old: JsonObject, new: JsonObject, subresource: str | None, dry_run: bool
    ) -> JsonObject:
        old_meta, new_meta = metadata(old), metadata(new)
        for key in _SERVER_METADATA:
            if key in old_meta:
                new_meta[key] = old_meta[key]
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        new["kind"], new["apiVersion"] = resource.kind, resource.api_version
        if subresource == "status":
            # The status subresource keeps spec and labels but, as on a real server, takes annotations.
            result = deep_copy(old)
            result["status"] = new.get("status")
            metadata(result).pop("annotations", None)
            if new_meta.get("annotations"):
                metadata(result)["annotations"] = new_meta["annotations"]
            new = result
        else:
            # Clients cannot set the generation; prepare_update counts it for the kinds that have one.
            new_meta.pop("generation", None)
            self.strategies.prepare_update(resource, old, new)
            apply_defaults(resource.kind, new)
            validate(resource, new, old)
        if pruned(new) == pruned(old) or dry_run:
            return new if dry_run else old
        return self.store.put(resource.qualified, new)

    def _require_open_namespace(self, resource: ResourceType, namespace: str, name: str) -> None:
        if metadata(self.get(NAMESPACES, "", namespace)).get("deletionTimestamp"):
            raise Forbidden(
                f'{qualified_resource(resource.plural, resource.group)} "{name}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
                details={"name": name, "kind": resource.plural},
            )

    def _check_version(self, resource: ResourceType, old: JsonObject, new: JsonObject) -> None:
        wanted = resource_version_of(new)
        if wanted and wanted != resource_version_of(old):
            raise conflict(resource.plural, resource.group, name_of(old))

    def _decode(self, resource: ResourceType, body: Any, namespace: str) -> JsonObject:
        if not isinstance(body, dict):
            raise BadRequest("the body of the request must be a JSON object")
        obj = deep_copy(body)
        if obj.get("apiVersion") not in (None, resource.api_version):
            raise BadRequest(
                f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
                f"({resource.api_version})"
            )
        if obj.get("kind") not in (None, resource.kind):
            raise BadRequest(f"the kind in the data ({obj['kind']}) does not match the expected kind ({resource.kind})")
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        meta = metadata(obj)
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _delete_tree(self, resource: ResourceType, obj: JsonObject, policy: str) -> None:
        dependents = self._dependents(uid_of(obj))
        if resource is NAMESPACES:
            # A namespace's contents go with it, whatever the policy.
            dependents = [
                (kind, item)
                for kind in RESOURCES
                if kind.namespaced
                for item in self.store.list(kind.qualified, name_of(obj))
            ]
            policy = "Background"
        if policy == "Orphan":
            for kind, item in dependents:
                self._orphan(kind, item, uid_of(obj))
            dependents = []
        if policy == "Foreground":
            self._delete_all(dependents, policy)
        removed = self.store.remove(resource.qualified, namespace_of(obj), name_of(obj))
        if removed is not None:
            self.strategies.release(resource, removed)
        if policy != "Foreground":
            self._delete_all(dependents, policy)

    def _orphan(self, resource: ResourceType, item: JsonObject, owner_uid: str) -> None:
        meta = metadata(item)
        refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != owner_uid]
        meta.pop("ownerReferences", None)
        if refs:
            meta["ownerReferences"] = refs
        self._replace(resource, self.get(resource, namespace_of(item), name_of(item)), item, None, dry_run=False)

    def _delete_all(self, items: list[tuple[ResourceType, JsonObject]], policy: str) -> None:
        for kind, item in items:
            if self.store.get(kind.qualified, namespace_of(item), name_of(item)) is not None:
                self._delete_tree(kind, item, policy)

    def _dependents(self, uid: str) -> list[tuple[ResourceType, JsonObject]]:
        return [
            (kind, item) for kind in RESOURCES for item in self.store.list(kind.qualified) if uid in owner_uids(item)
        ]
