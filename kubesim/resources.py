"""The resource types kubesim serves: names, kinds, groups, scopes, verbs and subresources."""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource, e.g. ``deployments`` in ``apps/v1``."""

    plural: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    has_status: bool = False  # the main endpoint ignores status; /status writes only status
    tracks_generation: bool = False  # metadata.generation counts spec changes

    @property
    def api_version(self) -> str:
        """``apps/v1`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` or ``pods``: the store key and the name used in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        """``DeploymentList``."""
        return f"{self.kind}List"


NAMESPACES = ResourceType(
    "namespaces",
    "namespace",
    "Namespace",
    "",
    "v1",
    namespaced=False,
    short_names=("ns",),
    subresources=("status", "finalize"),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    has_status=True,
)
NODES = ResourceType("nodes", "node", "Node", "", "v1", namespaced=False, short_names=("no",), subresources=("status",))
PODS = ResourceType(
    "pods",
    "pod",
    "Pod",
    "",
    "v1",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=("status", "log"),
    has_status=True,
)
SERVICES = ResourceType(
    "services",
    "service",
    "Service",
    "",
    "v1",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    subresources=("status", "proxy"),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    has_status=True,
)
CONFIGMAPS = ResourceType("configmaps", "configmap", "ConfigMap", "", "v1", namespaced=True, short_names=("cm",))
SECRETS = ResourceType("secrets", "secret", "Secret", "", "v1", namespaced=True)
EVENTS = ResourceType("events", "event", "Event", "", "v1", namespaced=True, short_names=("ev",))
DEPLOYMENTS = ResourceType(
    "deployments",
    "deployment",
    "Deployment",
    "apps",
    "v1",
    namespaced=True,
    short_names=("deploy",),
    categories=("all",),
    subresources=("status", "scale"),
    has_status=True,
    tracks_generation=True,
)
REPLICASETS = ResourceType(
    "replicasets",
    "replicaset",
    "ReplicaSet",
    "apps",
    "v1",
    namespaced=True,
    short_names=("rs",),
    categories=("all",),
    subresources=("status", "scale"),
    has_status=True,
    tracks_generation=True,
)

JOBS = ResourceType(
    "jobs",
    "job",
    "Job",
    "batch",
    "v1",
    namespaced=True,
    categories=("all",),
    subresources=("status",),
    has_status=True,
    tracks_generation=True,
)

RESOURCES: tuple[ResourceType, ...] = (
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    CONFIGMAPS,
    SECRETS,
    EVENTS,
    DEPLOYMENTS,
    REPLICASETS,
    JOBS,
)

# Groups in discovery order, with their served versions.
GROUP_VERSIONS: dict[str, tuple[str, ...]] = {"": ("v1",), "apps": ("v1",), "batch": ("v1",)}


def find(group: str, version: str, plural: str) -> ResourceType | None:
    """The resource served at ``/apis/{group}/{version}/{plural}`` (group ``""`` is ``/api/v1``)."""
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """The resource whose objects have this ``apiVersion`` and ``kind``."""
    for resource in RESOURCES:
        if (resource.api_version, resource.kind) == (api_version, kind):
            return resource
    return None


def in_group_version(group: str, version: str) -> tuple[ResourceType, ...]:
    """Every resource served in one group version."""
    return tuple(r for r in RESOURCES if (r.group, r.version) == (group, version))
