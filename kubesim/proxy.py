"""The service proxy: every path under ``/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/`` answers a health
document, 200 when the service's pods are ready and run healthy images, 503 otherwise."""

from __future__ import annotations

from kubesim.images import ImagePolicy
from kubesim.objects import labels_of, name_of
from kubesim.registry import Registry
from kubesim.replicasets import pod_ready_since
from kubesim.resources import PODS, SERVICES
from kubesim.selectors import LabelSelector
from kubesim.status import JsonObject


def parse_service_reference(reference: str) -> tuple[str, str | None]:
    """``NAME``, ``NAME:PORT`` or ``SCHEME:NAME:PORT`` to ``(name, port)``."""
    parts = reference.split(":")
    if len(parts) == 3:
        return parts[1], parts[2] or None
    if len(parts) == 2:
        return parts[0], parts[1] or None
    return reference, None


class ServiceHealth:
    """Judges a service by its selected pods and the image policy."""

    def __init__(self, registry: Registry, images: ImagePolicy):
        self._registry = registry
        self._images = images

    def check(self, namespace: str, reference: str) -> tuple[int, JsonObject]:
        """``(HTTP code, body)`` for a proxied request; an unknown service is a ``NotFound`` error."""
        name, port = parse_service_reference(reference)
        service = self._registry.get(SERVICES, namespace, name)
        body: JsonObject = {"service": name, "namespace": namespace}
        if port is not None and not _has_port(service, port):
            return 503, {**body, "status": "DOWN", "reason": f"service has no port {port}"}
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            return 503, {**body, "status": "DOWN", "reason": "service has no selector"}
        chosen = LabelSelector.from_map(selector)
        pods = [pod for pod in self._registry.store.list(PODS.qualified, namespace) if chosen.matches(labels_of(pod))]
        ready = [pod for pod in pods if pod_ready_since(pod) is not None]
        images = sorted({str(c.get("image")) for pod in pods for c in (pod.get("spec") or {}).get("containers") or []})
        body.update(pods=len(pods), ready=len(ready), images=images)
        problem = self._problem(pods, ready, images)
        if problem is not None:
            return 503, {**body, "status": "DOWN", "reason": problem}
        return 200, {**body, "status": "UP"}

    def _problem(self, pods: list[JsonObject], ready: list[JsonObject], images: list[str]) -> str | None:
        if not pods:
            return "no pods selected"
        unready = sorted(name_of(pod) for pod in pods if pod not in ready)
        if unready:
            return f"pods not ready: {', '.join(unready)}"
        unhealthy = [image for image in images if not self._images.healthy(image)]
        if unhealthy:
            return f"unhealthy images: {', '.join(unhealthy)}"
        return None


def _has_port(service: JsonObject, port: str) -> bool:
    for entry in (service.get("spec") or {}).get("ports") or []:
        if port in (str(entry.get("port")), str(entry.get("name") or "")):
            return True
    return False
