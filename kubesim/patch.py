"""The PATCH content types: strategic merge, JSON merge patch (RFC 7386), JSON patch (RFC 6902) and an approximation
of server-side apply."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from kubesim.status import BadRequest, Invalid, JsonObject, UnsupportedMediaType
from kubesim.strategic_merge import strategic_merge

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE, STRATEGIC_MERGE, APPLY)


def parse_patch(content_type: str, body: bytes) -> Any:
    """Decode a PATCH body; apply patches may be YAML, the others must be JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}"
        )
    try:
        return yaml.safe_load(body) if media == APPLY else json.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as error:
        raise BadRequest(f"error decoding patch: {error}") from error


def apply_patch(content_type: str, original: JsonObject, patch: Any, kind: str) -> JsonObject:
    """``original`` with ``patch`` applied according to ``content_type``.

    Server-side apply is approximated by a strategic merge of the applied configuration (no field ownership).
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        result = json_patch(original, patch)
    elif media == MERGE:
        result = merge_patch(original, patch)
    else:
        result = strategic_merge(original, patch, kind)
    if not isinstance(result, dict):
        raise BadRequest("the patched document is not an object")
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902: apply each operation in order; a failed operation is a 422 as on the API server."""
    if not isinstance(operations, list):
        raise BadRequest("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise BadRequest(f"invalid JSON patch operation: {operation!r}")
        result = _apply_operation(result, operation)
    return result


def _apply_operation(document: Any, operation: JsonObject) -> Any:
    op = operation["op"]
    path = _pointer(operation["path"])
    if op == "test":
        if _resolve(document, path) != operation.get("value"):
            raise Invalid(f"testing value {operation['path']} failed")
        return document
    if op == "remove":
        return _remove(document, path)
    if op in ("add", "replace"):
        if "value" not in operation:
            raise BadRequest(f"missing value in JSON patch operation {op}")
        if op == "replace":
            _resolve(document, path)
            document = _remove(document, path)
        return _add(document, path, copy.deepcopy(operation["value"]))
    if op in ("move", "copy"):
        source = _pointer(str(operation.get("from", "")))
        value = copy.deepcopy(_resolve(document, source))
        if op == "move":
            document = _remove(document, source)
        return _add(document, path, value)
    raise BadRequest(f"unknown JSON patch operation {op!r}")


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise BadRequest(f"invalid JSON pointer {text!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit():
        raise Invalid(f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not for_add):
        raise Invalid(f"array index {index} out of bounds")
    return index


def _resolve(document: Any, path: list[str]) -> Any:
    current = document
    for token in path:
        if isinstance(current, dict):
            if token not in current:
                raise Invalid(f"unable to resolve path: missing key {token!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise Invalid(f"unable to resolve path at {token!r}")
    return current


def _add(document: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _resolve(document, path[:-1])
    token = path[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, for_add=True), value)
    else:
        raise Invalid(f"cannot add at {token!r}: parent is not a container")
    return document


def _remove(document: Any, path: list[str]) -> Any:
    if not path:
        return None
    parent = _resolve(document, path[:-1])
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise Invalid(f"unable to remove nonexistent key: {token}")
        del parent[token]
    elif isinstance(parent, list):
        del parent[_index(parent, token, for_add=False)]
    else:
        raise Invalid(f"cannot remove at {token!r}: parent is not a container")
    return document
