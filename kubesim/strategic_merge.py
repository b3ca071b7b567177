"""Strategic merge patch: list merge keys of the built-in types and the ``$patch``/``$retainKeys``/
``$setElementOrder``/``$deleteFromPrimitiveList`` directives."""

from __future__ import annotations

from typing import Any

from kubesim.status import BadRequest, JsonObject

# List fields merged element-wise, by field name, with the Go types' ``patchMergeKey``.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "claims": "name",
    "ports": "containerPort",
}
# Lists of scalars merged as sets (``patchStrategy: merge`` on a primitive list).
_PRIMITIVE_MERGE = {"finalizers"}

_DELETE = object()  # marks a map deleted by ``$patch: delete``


def strategic_merge(original: JsonObject, patch: JsonObject, kind: str) -> JsonObject:
    """Apply a strategic merge ``patch`` to a copy of ``original`` (an object of ``kind``)."""
    if not isinstance(patch, dict):
        raise BadRequest("a strategic merge patch must be a JSON object")
    merged = _Merger(kind).merge_map(original, patch, ())
    if merged is _DELETE:
        raise BadRequest("a strategic merge patch cannot delete the whole object")
    return merged  # type: ignore[no-any-return]


def merge_key(kind: str, path: tuple[str, ...]) -> str | None:
    """The merge key of the list at ``path`` in ``kind``; ``None`` for lists that a patch replaces whole."""
    field = path[-1]
    if field == "ports" and kind == "Service" and path == ("spec", "ports"):
        return "port"
    return _MERGE_KEYS.get(field)


class _Merger:
    """One patch application, remembering the kind so list fields resolve their merge keys."""

    def __init__(self, kind: str):
        self._kind = kind

    def merge_map(self, original: JsonObject, patch: JsonObject, path: tuple[str, ...]) -> Any:
        directive = patch.get("$patch")
        if directive == "delete":
            return _DELETE
        if directive == "replace":
            return _without_directives(patch)
        if directive not in (None, "merge"):
            raise BadRequest(f"unknown patch directive {directive!r}")
        result = dict(original)
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            self._merge_field(result, key, value, (*path, key))
        self._apply_list_directives(result, patch, path)
        retain = patch.get("$retainKeys")
        if retain is not None:
            result = {key: value for key, value in result.items() if key in retain}
        return result

    def _merge_field(self, result: JsonObject, key: str, value: Any, path: tuple[str, ...]) -> None:
        if value is None:
            result.pop(key, None)
            return
        if isinstance(value, dict):
            current = result.get(key)
            merged = self.merge_map(current if isinstance(current, dict) else {}, value, path)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
            return
        if isinstance(value, list):
            current = result.get(key)
            result[key] = self._merge_list(current if isinstance(current, list) else [], value, path)
            return
        result[key] = value

    def _merge_list(self, original: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
        field = path[-1]
        if field in _PRIMITIVE_MERGE:
            return [*original, *(item for item in patch if item not in original)]
        key = merge_key(self._kind, path)
        if key is None or any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
            return [_without_directives(item) for item in patch if not _is_directive_only(item)]
        result = list(original)
        for item in patch:
            if not isinstance(item, dict):
                raise BadRequest(f"the list {'.'.join(path)} must hold objects merged by {key!r}")
            if key not in item:
                raise BadRequest(f"map: {item} does not contain declared merge key: {key}")
            index = next(
                (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None
            )
            if item.get("$patch") == "delete":
                if index is not None:
                    del result[index]
            elif index is None:
                result.append(_without_directives(item))
            else:
                result[index] = self.merge_map(result[index], item, path)
        return result

    def _apply_list_directives(self, result: JsonObject, patch: JsonObject, path: tuple[str, ...]) -> None:
        for key, value in patch.items():
            if key.startswith("$deleteFromPrimitiveList/"):
                field = key.split("/", 1)[1]
                result[field] = [item for item in result.get(field) or [] if item not in value]
            elif key.startswith("$setElementOrder/"):
                field = key.split("/", 1)[1]
                if isinstance(result.get(field), list):
                    result[field] = _ordered(result[field], value, merge_key(self._kind, (*path, field)))


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """``items`` sorted by their position in ``order``; items ``order`` does not name keep their place at the end."""

    def identity(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [identity(item) for item in order]
    ranked = [
        (wanted.index(identity(item)) if identity(item) in wanted else len(wanted), i) for i, item in enumerate(items)
    ]
    return [items[i] for _, i in sorted(ranked)]


def _is_directive_only(item: Any) -> bool:
    return isinstance(item, dict) and bool(item) and all(key.startswith("$") for key in item)


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_directives(item) for key, item in value.items() if not key.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(item) for item in value]
    return value
