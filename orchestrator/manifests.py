"""Kubernetes manifests: the objects of a multi-document YAML text, read safely.

One reading for every place that takes Kubernetes YAML: a K8S task's `yaml` when a pipeline is saved and
when the task runs, and the application YAML of the smart CD template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from orchestrator.decoding import MAX_DOCUMENT_BYTES, MAX_VALUES, load_yaml_documents, size_problem
from orchestrator.errors import BadRequest, Problem

KubeObject = dict[str, Any]


def is_object(value: object) -> TypeGuard[KubeObject]:
    """Whether a value is a Kubernetes object: apiVersion, kind and metadata.name, all text."""
    if not isinstance(value, dict) or not all(isinstance(value.get(key), str) for key in ("apiVersion", "kind")):
        return False
    metadata = value.get("metadata")
    return isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str) and bool(metadata["name"].strip())


def read_objects(text: object, field: str, max_values: int = MAX_VALUES) -> tuple[list[KubeObject], list[Problem]]:
    """The objects in a YAML text (empty documents skipped, a `List`'s items unpacked), or the problems.

    Problems are reported at `field` or `field[N]` (N counting documents from 0).
    """
    if not isinstance(text, str) or not text.strip():
        return [], [Problem(field, "must be Kubernetes YAML (one or more documents)")]
    if len(text.encode("utf-8", errors="replace")) > MAX_DOCUMENT_BYTES:
        return [], [Problem(field, f"is larger than {MAX_DOCUMENT_BYTES} bytes")]
    try:
        documents = [document for document in load_yaml_documents(text, field) if document is not None]
    except BadRequest as error:
        return [], [Problem(field, error.message.removeprefix(f"{field} "))]
    too_big = size_problem(documents, max_values)
    if too_big is not None:
        return [], [Problem(field, too_big)]
    objects: list[KubeObject] = []
    problems: list[Problem] = []
    for index, document in enumerate(documents):
        for item in _items(document):
            if is_object(item):
                objects.append(item)
            else:
                problems.append(
                    Problem(f"{field}[{index}]", "must be a Kubernetes object with apiVersion, kind and metadata.name")
                )
    if not documents:
        problems.append(Problem(field, "holds no Kubernetes object"))
    return objects, problems


def _items(document: object) -> list[object]:
    """A document's objects: itself, or the items of a `List`."""
    if isinstance(document, dict) and document.get("kind") == "List" and isinstance(document.get("items"), list):
        return list(document["items"])
    return [document]
