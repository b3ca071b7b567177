"""Pod templates as the deployment controller sees them: the ``pod-template-hash`` and equality ignoring it."""

from __future__ import annotations

import json
from typing import Any

from kubesim.objects import pruned, safe_encode
from kubesim.status import JsonObject

HASH_LABEL = "pod-template-hash"


def _without_hash(template: Any) -> Any:
    clean = pruned(template) if isinstance(template, dict) else {}
    template_labels = (clean.get("metadata") or {}).get("labels")
    if isinstance(template_labels, dict) and HASH_LABEL in template_labels:
        template_labels = {key: value for key, value in template_labels.items() if key != HASH_LABEL}
        clean["metadata"] = {**clean["metadata"], "labels": template_labels}
    return pruned(clean)


def equal_ignoring_hash(first: Any, second: Any) -> bool:
    """Whether two pod templates are the same once the hash label and unset fields are ignored."""
    return bool(_without_hash(first) == _without_hash(second))


def template_hash(template: JsonObject, collision_count: int = 0) -> str:
    """A stable ``pod-template-hash`` in the real controller's style: FNV-1a 32 of the template, safe-encoded."""
    data = json.dumps(_without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    value = 0x811C9DC5
    for byte in data + (str(collision_count).encode() if collision_count else b""):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(value))
