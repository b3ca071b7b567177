"""Label selectors (string and object forms) and field selectors."""

from __future__ import annotations

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from kubesim import KubeSim
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.status import BadRequest

from kubesim_support import wait_until

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("tier in (front,back)", True),
        ("tier in (back)", False),
        ("env notin (dev, test)", True),
        ("missing notin (x)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("app=web,tier=front,!missing", True),
        ("app=web,tier=back", False),
        ("example.com/owner=", False),
    ],
)
def test_label_selector_syntax(text: str, expected: bool) -> None:
    # Given labels and a selector string
    # When the selector is parsed and matched
    # Then it follows the API server's semantics (!= and notin match absent keys)
    assert LabelSelector.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", ["app=", "in (a)", "a in b", "a,,b", "a = (b)"])
def test_malformed_label_selectors_are_bad_requests(text: str) -> None:
    # Given a malformed selector (or an empty value, which is legal)
    # When it is parsed
    # Then only malformed ones fail
    if text == "app=":
        assert LabelSelector.parse(text).matches({"app": ""})
        return
    with pytest.raises(BadRequest):
        LabelSelector.parse(text)


def test_object_selector_forms() -> None:
    # Given a metav1.LabelSelector with both forms
    selector = LabelSelector.from_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"},
            ],
        }
    )

    # When it is matched and printed
    # Then every clause applies and it prints in query syntax
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "canary": "1"})
    assert str(selector) == "app=web,tier in (front),!canary,env"


def test_field_selectors() -> None:
    # Given a pod-like object
    pod = {"metadata": {"name": "p", "namespace": "demo"}, "status": {"phase": "Running"}}

    # When field selectors are parsed for pods
    # Then equality and inequality work on supported fields and unknown fields are refused
    assert FieldSelector.parse("metadata.name=p,status.phase!=Pending", "Pod").matches(pod)
    assert not FieldSelector.parse("status.phase==Pending", "Pod").matches(pod)
    with pytest.raises(BadRequest):
        FieldSelector.parse("status.phase=Running", "ConfigMap")


def test_client_lists_with_selectors(sim: KubeSim, core: CoreV1Api, namespace: str) -> None:
    # Given pods of two tiers, one of whose images cannot be pulled
    sim.set_images(unpullable=["ghost:*"])
    for name, tier, image in (("a", "front", "nginx:1"), ("b", "back", "nginx:1"), ("c", "front", "ghost:1")):
        body = {
            "metadata": {"name": name, "labels": {"tier": tier}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }
        core.create_namespaced_pod(namespace, body)

    # When they are listed by label, by name and by phase (after the pullable ones start)
    fronts = core.list_namespaced_pod(namespace, label_selector="tier in (front)")
    named = core.list_namespaced_pod(namespace, field_selector="metadata.name=b")
    running = wait_until(
        lambda: (
            len(found := core.list_namespaced_pod(namespace, field_selector="status.phase=Running").items) == 2
            and found
        ),
        what="the pullable pods to run",
    )
    pending = core.list_namespaced_pod(namespace, field_selector="status.phase!=Running")

    # Then each selector picks the right pods
    assert [pod.metadata.name for pod in fronts.items] == ["a", "c"]
    assert [pod.metadata.name for pod in named.items] == ["b"]
    assert [pod.metadata.name for pod in running] == ["a", "b"]
    assert [pod.metadata.name for pod in pending.items] == ["c"]


def test_client_unsupported_field_is_bad_request(core: CoreV1Api, namespace: str) -> None:
    # Given the emulator
    # When configmaps are listed by an unsupported field
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map(namespace, field_selector="data.x=1")

    # Then the answer is 400
    assert raised.value.status == 400
