"""Helpers for Kubernetes objects held as JSON dictionaries: metadata access, owners, names, comparison."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from kubesim.status import JsonObject

# The alphabet of Kubernetes' rand.String and SafeEncodeString: no vowels, no look-alike characters.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def deep_copy(obj: JsonObject) -> JsonObject:
    """An independent copy of ``obj``."""
    return copy.deepcopy(obj)


def metadata(obj: JsonObject) -> JsonObject:
    """``obj.metadata``, created empty if absent or null."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def string_map(obj: JsonObject, field: str) -> dict[str, str]:
    """``obj.metadata[field]`` (labels or annotations), created empty if absent."""
    meta = metadata(obj)
    value = meta.get(field)
    if not isinstance(value, dict):
        value = {}
        meta[field] = value
    return value


def labels_of(obj: JsonObject) -> dict[str, str]:
    """A read-only view of the object's labels (empty when it has none)."""
    value = (obj.get("metadata") or {}).get("labels")
    return value if isinstance(value, dict) else {}


def annotations_of(obj: JsonObject) -> dict[str, str]:
    """A read-only view of the object's annotations (empty when it has none)."""
    value = (obj.get("metadata") or {}).get("annotations")
    return value if isinstance(value, dict) else {}


def name_of(obj: JsonObject) -> str:
    """``metadata.name``, or the empty string."""
    return str((obj.get("metadata") or {}).get("name") or "")


def namespace_of(obj: JsonObject) -> str:
    """``metadata.namespace``, or the empty string."""
    return str((obj.get("metadata") or {}).get("namespace") or "")


def uid_of(obj: JsonObject) -> str:
    """``metadata.uid``, or the empty string."""
    return str((obj.get("metadata") or {}).get("uid") or "")


def resource_version_of(obj: JsonObject) -> str:
    """``metadata.resourceVersion``, or the empty string."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def owner_uids(obj: JsonObject) -> list[str]:
    """The uids of every owner named in ``metadata.ownerReferences``."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [str(ref.get("uid")) for ref in refs if isinstance(ref, dict) and ref.get("uid")]


def controller_uid(obj: JsonObject) -> str | None:
    """The uid of the owner reference marked ``controller: true``, if any."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    for ref in refs:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def controller_reference(owner: JsonObject) -> JsonObject:
    """The owner reference a controller stamps on the objects it creates."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def random_suffix(length: int = 5) -> str:
    """A random name suffix like the ones ``generateName`` and controllers use."""
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(length))


def safe_encode(text: str) -> str:
    """Kubernetes' ``rand.SafeEncodeString``: map each byte onto the vowel-free alphabet."""
    return "".join(NAME_ALPHABET[ord(char) % len(NAME_ALPHABET)] for char in text)


def pruned(value: Any) -> Any:
    """``value`` without nulls, empty maps and empty lists, recursively.

    Go structs serialise unset optional fields as absent, ``null``, ``{}`` or ``[]`` interchangeably; comparing
    pruned values makes templates that differ only that way compare equal, as the real controller's do.
    """
    if isinstance(value, dict):
        result = {key: pruned(item) for key, item in value.items()}
        return {key: item for key, item in result.items() if item not in (None, {}, [])}
    if isinstance(value, list):
        return [pruned(item) for item in value]
    return value


def nested(obj: JsonObject, *path: str) -> Any:
    """The value at ``path`` inside nested maps, or ``None`` when any step is missing."""
    current: Any = obj
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current
