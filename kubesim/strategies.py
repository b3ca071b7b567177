"""Per-kind write semantics: status reset on create, status kept on spec writes, generation counting and the
service addresses (cluster IP, node ports) that the API server allocates."""

from __future__ import annotations

from kubesim.network import NODE_NAME, Network
from kubesim.objects import annotations_of, metadata, name_of, pruned
from kubesim.resources import ResourceType
from kubesim.status import JsonObject, invalid

# What a fresh object's status holds: Go structs serialise these fields even when zero.
_INITIAL_STATUS: dict[str, JsonObject] = {
    "Pod": {"phase": "Pending", "qosClass": "BestEffort"},
    "ReplicaSet": {"replicas": 0},
}


class Strategies:
    """What happens to an object on create, update and delete beyond storing it."""

    def __init__(self, network: Network):
        self._network = network

    def prepare_create(self, resource: ResourceType, obj: JsonObject) -> None:
        """Reset fields clients may not set on create and allocate addresses."""
        if resource.has_status:
            obj["status"] = dict(_INITIAL_STATUS.get(resource.kind, {}))
        if resource.tracks_generation:
            metadata(obj)["generation"] = 1
        if resource.kind == "Service":
            self._allocate_service(obj, None)
        if resource.kind == "Pod" and isinstance(obj.get("spec"), dict):
            # The single simulated node takes every pod at once: creation doubles as scheduling.
            obj["spec"].setdefault("nodeName", NODE_NAME)

    def prepare_update(self, resource: ResourceType, old: JsonObject, new: JsonObject) -> None:
        """Keep the stored status on a spec write, carry allocated addresses and count the generation."""
        if resource.has_status:
            if old.get("status") is None:
                new.pop("status", None)
            else:
                new["status"] = old["status"]
        if resource.kind == "Service":
            self._allocate_service(new, old)
        if resource.tracks_generation:
            generation = int(metadata(old).get("generation") or 1)
            metadata(new)["generation"] = generation + 1 if _spec_changed(resource, old, new) else generation

    def release(self, resource: ResourceType, obj: JsonObject) -> None:
        """Return a deleted object's addresses to the pools."""
        spec = obj.get("spec") or {}
        if resource.kind == "Service":
            for address in spec.get("clusterIPs") or []:
                self._network.service_ips.release(address)
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    self._network.node_ports.release(int(port["nodePort"]))
        elif resource.kind == "Pod" and (obj.get("status") or {}).get("podIP"):
            self._network.pod_ips.release(obj["status"]["podIP"])

    def _allocate_service(self, service: JsonObject, old: JsonObject | None) -> None:
        spec = service.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        if spec.get("type") == "ExternalName":
            return
        requested = spec.get("clusterIP")
        if old is not None:
            if requested in (None, "", old_spec.get("clusterIP")):
                spec["clusterIP"] = old_spec.get("clusterIP")
                spec["clusterIPs"] = old_spec.get("clusterIPs")
            else:
                cause = ("FieldValueInvalid", "spec.clusterIP", f'Invalid value: "{requested}": field is immutable')
                raise invalid("Service", "", name_of(service), [cause])
        elif requested in (None, ""):
            spec["clusterIP"] = self._network.service_ips.allocate()
        elif requested != "None" and not self._network.service_ips.reserve(str(requested)):
            cause = (
                "FieldValueInvalid",
                "spec.clusterIP",
                f'Invalid value: "{requested}": provided IP is already allocated or not in the valid range',
            )
            raise invalid("Service", "", name_of(service), [cause])
        spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            self._allocate_node_ports(spec, old_spec)

    def _allocate_node_ports(self, spec: JsonObject, old_spec: JsonObject) -> None:
        previous = {port.get("port"): port.get("nodePort") for port in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                port["nodePort"] = previous.get(port.get("port")) or self._network.node_ports.allocate()


def _spec_changed(resource: ResourceType, old: JsonObject, new: JsonObject) -> bool:
    if pruned(old.get("spec")) != pruned(new.get("spec")):
        return True
    # Deployments also count annotation changes: the controller copies them onto ReplicaSets.
    return resource.kind == "Deployment" and annotations_of(old) != annotations_of(new)
