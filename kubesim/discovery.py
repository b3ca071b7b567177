"""Discovery documents: ``/version``, ``/api``, ``/apis``, per-group-version resource lists and a minimal OpenAPI v2."""

from __future__ import annotations

import base64
import hashlib
import json

from kubesim.resources import GROUP_VERSIONS, ResourceType, in_group_version
from kubesim.status import JsonObject

SERVER_VERSION: JsonObject = {
    "major": "1",
    "minor": "20",
    "gitVersion": "v1.20.2",
    "gitCommit": "kubesim",
    "gitTreeState": "clean",
    "buildDate": "2021-01-13T13:20:00Z",
    "goVersion": "go1.15.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> JsonObject:
    """``GET /api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": list(GROUP_VERSIONS[""]),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str) -> JsonObject:
    """One named group as listed under ``/apis`` and served at ``/apis/{group}``."""
    versions = [{"groupVersion": f"{group}/{version}", "version": version} for version in GROUP_VERSIONS[group]]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> JsonObject:
    """``GET /apis``: the named groups."""
    groups = [api_group(group) for group in GROUP_VERSIONS if group]
    for group in groups:
        del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str) -> JsonObject | None:
    """``GET /api/v1`` or ``/apis/{group}/{version}``: the resources with verbs, kinds and short names."""
    if version not in GROUP_VERSIONS.get(group, ()):
        return None
    entries: list[JsonObject] = []
    for resource in in_group_version(group, version):
        entries.append(_resource_entry(resource))
        entries.extend(_subresource_entry(resource, sub) for sub in resource.subresources)
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}


def _resource_entry(resource: ResourceType) -> JsonObject:
    entry: JsonObject = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
        "storageVersionHash": _storage_hash(resource),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    return entry


def _subresource_entry(resource: ResourceType, sub: str) -> JsonObject:
    entry: JsonObject = {"name": f"{resource.plural}/{sub}", "singularName": "", "namespaced": resource.namespaced}
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale", verbs=["get", "patch", "update"])
    elif sub == "log":
        entry.update(kind="Pod", verbs=["get"])
    elif sub == "proxy":
        entry.update(kind=f"{resource.kind}ProxyOptions", verbs=["create", "delete", "get", "patch", "update"])
    elif sub == "finalize":
        entry.update(kind=resource.kind, verbs=["update"])
    else:
        entry.update(kind=resource.kind, verbs=["get", "patch", "update"])
    return entry


def _storage_hash(resource: ResourceType) -> str:
    digest = hashlib.sha256(f"{resource.api_version}/{resource.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def openapi_v2_json() -> bytes:
    """An OpenAPI v2 document with no paths or definitions: clients fall back to their compiled-in schemas."""
    info = {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]}
    return json.dumps({"swagger": "2.0", "info": info, "paths": {}, "definitions": {}}).encode()


def openapi_v2_protobuf() -> bytes:
    """The same empty document in gnostic's protobuf encoding, which kubectl requests for validation."""
    info = _field(1, b"Kubernetes") + _field(2, str(SERVER_VERSION["gitVersion"]).encode())
    # Document fields: 1 swagger, 2 info, 8 paths, 9 definitions (empty messages are still present).
    return _field(1, b"2.0") + _field(2, info) + _field(8, b"") + _field(9, b"")


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
