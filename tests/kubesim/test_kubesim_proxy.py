"""The service-proxy health endpoint and the admin image route."""

from __future__ import annotations

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api

from kubesim import KubeSim
from kubesim.proxy import parse_service_reference

from kubesim_support import deployment, http, rolled_out, service, wait_until


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("app", ("app", None)), ("app:80", ("app", "80")), ("http:app:80", ("app", "80")), ("https:app:", ("app", None))],
)
def test_service_reference_forms(reference: str, expected: tuple[str, str | None]) -> None:
    # Given a service reference as the proxy URL carries it
    # When it is parsed
    # Then the name and port come out
    assert parse_service_reference(reference) == expected


@pytest.fixture
def serving(apps: AppsV1Api, core: CoreV1Api, namespace: str) -> str:
    """A rolled-out ``web`` deployment behind an ``app`` service on port 80."""
    core.create_namespaced_service(namespace, service("app", "web"))
    apps.create_namespaced_deployment(namespace, deployment("web", "app:1", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), what="rollout")
    return namespace


@pytest.mark.parametrize("reference", ["app", "app:80", "http:app:80", "app:http"])
def test_healthy_service_answers_up_on_any_proxied_path(sim: KubeSim, serving: str, reference: str) -> None:
    # Given a service whose pods are all ready
    base = f"{sim.url}/api/v1/namespaces/{serving}/services/{reference}/proxy"

    # When health-check URLs under its proxy path are requested
    answers = [http("GET", f"{base}/healthz"), http("GET", f"{base}/"), http("POST", f"{base}/deep/path")]

    # Then each answers 200 with the UP document
    for code, body in answers:
        assert code == 200
        assert body["status"] == "UP"
        assert (body["pods"], body["ready"]) == (2, 2)


def test_service_without_ready_pods_is_down(sim: KubeSim, apps: AppsV1Api, serving: str) -> None:
    # Given a service whose deployment is scaled to zero
    apps.patch_namespaced_deployment_scale("web", serving, {"spec": {"replicas": 0}})
    url = f"{sim.url}/api/v1/namespaces/{serving}/services/app:80/proxy/healthz"

    # When its health is requested after the pods are gone
    code, body = wait_until(lambda: (answer := http("GET", url))[1]["pods"] == 0 and answer, what="the pods to go")

    # Then it answers 503 DOWN with the reason
    assert code == 503
    assert body["status"] == "DOWN"
    assert body["reason"] == "no pods selected"


def test_image_marked_crashing_takes_the_service_down(sim: KubeSim, core: CoreV1Api, serving: str) -> None:
    # Given a healthy service
    url = f"{sim.url}/api/v1/namespaces/{serving}/services/app/proxy/healthz"
    assert http("GET", url)[0] == 200

    # When its image is declared crashing through the admin route
    code, lists = http("POST", f"{sim.url}/kubesim/images", {"crashing": ["app:*"]})

    # Then the route reports the lists and the service is down at once
    assert code == 200
    assert lists == {"unpullable": [], "crashing": ["app:*"]}
    assert http("GET", f"{sim.url}/kubesim/images") == (200, lists)
    down_code, body = http("GET", url)
    assert down_code == 503
    assert body["status"] == "DOWN"


def test_wrong_port_and_unknown_service(sim: KubeSim, serving: str) -> None:
    # Given a service on port 80 only
    base = f"{sim.url}/api/v1/namespaces/{serving}/services"

    # When a port it lacks and a service that does not exist are proxied
    wrong_port = http("GET", f"{base}/app:81/proxy/healthz")
    missing = http("GET", f"{base}/ghost:80/proxy/healthz")

    # Then the first is down and the second is a NotFound Status
    assert wrong_port[0] == 503
    assert missing[0] == 404
    assert missing[1]["reason"] == "NotFound"


def test_admin_route_lists_are_per_instance(sim: KubeSim) -> None:
    # Given two emulators, one of them told about a bad image
    with KubeSim(ready_delay=0.05, unpullable=["other:*"]) as other:
        # When the first one's lists are set and both are read
        http("POST", f"{sim.url}/kubesim/images", {"unpullable": ["nginx:bad*"]})

        # Then each keeps its own
        assert http("GET", f"{sim.url}/kubesim/images")[1] == {"unpullable": ["nginx:bad*"], "crashing": []}
        assert http("GET", f"{other.url}/kubesim/images")[1] == {"unpullable": ["other:*"], "crashing": []}


def test_admin_route_rejects_bad_bodies(sim: KubeSim) -> None:
    # Given the emulator
    # When the image lists are set to something that is not a list of names
    code, body = http("POST", f"{sim.url}/kubesim/images", {"unpullable": "nginx"})

    # Then the request is refused as a BadRequest Status
    assert code == 400
    assert body["reason"] == "BadRequest"
