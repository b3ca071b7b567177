"""Kubernetes YAML read the same way everywhere: at save, at run, and by the smart CD template."""

from __future__ import annotations

from orchestrator.errors import Problem
from orchestrator.manifests import read_objects

SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"


def test_documents_and_list_items_are_the_objects_and_empty_documents_are_skipped() -> None:
    # Given a text with a Service, an empty document and a List of a ConfigMap
    text = (
        SERVICE
        + "---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n"
    )

    # When read
    objects, problems = read_objects(text, "yaml")

    # Then both objects come out, in order, with no problem
    assert [(item["kind"], item["metadata"]["name"]) for item in objects] == [("Service", "web"), ("ConfigMap", "c")]
    assert problems == []


def test_what_is_not_an_object_is_reported_at_its_document() -> None:
    # When the second document lacks a name and the text is otherwise fine, or the text is not YAML at all
    _, unnamed = read_objects(SERVICE + "---\napiVersion: v1\nkind: Secret\nmetadata: {}\n", "yaml")
    _, broken = read_objects("kind: [unclosed", "kubernetesYaml")
    _, empty = read_objects("---\n", "yaml")

    # Then each says where and what
    assert unnamed == [Problem("yaml[1]", "must be a Kubernetes object with apiVersion, kind and metadata.name")]
    assert broken[0].path == "kubernetesYaml" and broken[0].message.startswith("is not valid YAML")
    assert empty == [Problem("yaml", "holds no Kubernetes object")]


def test_an_alias_bomb_is_refused_before_it_is_walked() -> None:
    # Given a few lines of YAML that stand for millions of values
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    bomb += "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    bomb += "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"

    # When read with a limit of 10,000 values, Then it is refused saying why
    _, problems = read_objects(bomb, "yaml", max_values=10_000)
    assert problems == [
        Problem("yaml", "the document holds more than 10000 values (a YAML alias counts each time it is used)")
    ]
