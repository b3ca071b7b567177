"""Discovery and server-side printing, as clients and kubectl read them."""

from __future__ import annotations

from kubernetes.client import ApiClient, ApisApi, AppsV1Api, CoreApi, CoreV1Api, VersionApi

from kubesim import KubeSim
from kubesim.discovery import openapi_v2_protobuf
from kubesim.tables import human_duration

from kubesim_support import http


def test_discovery_through_the_official_client(api: ApiClient) -> None:
    # Given the emulator
    # When the client reads the version, the API groups and the resource lists
    version = VersionApi(api).get_code()
    core_versions = CoreApi(api).get_api_versions()
    groups = ApisApi(api).get_api_versions()
    core = CoreV1Api(api).get_api_resources()
    apps = AppsV1Api(api).get_api_resources()

    # Then they describe a cluster with the core, apps and batch groups and kubectl's short names and verbs
    assert (version.major, version.minor) == ("1", "20")
    assert core_versions.versions == ["v1"]
    assert [group.name for group in groups.groups] == ["apps", "batch"]
    by_name = {resource.name: resource for resource in [*core.resources, *apps.resources]}
    assert by_name["deployments"].short_names == ["deploy"]
    assert by_name["deployments"].namespaced is True
    assert "watch" in by_name["pods"].verbs
    assert by_name["namespaces"].namespaced is False
    assert by_name["deployments/scale"].kind == "Scale"
    assert {"services/proxy", "replicasets/status", "pods/log"} <= set(by_name)


def test_openapi_is_minimal_but_decodable(sim: KubeSim) -> None:
    # Given the emulator
    # When the OpenAPI v2 document is requested as JSON
    code, document = http("GET", f"{sim.url}/openapi/v2")

    # Then it is an empty Swagger 2.0 document, so clients fall back to their compiled-in schemas
    assert code == 200
    assert (document["swagger"], document["paths"], document["definitions"]) == ("2.0", {}, {})
    assert openapi_v2_protobuf().startswith(b"\n\x032.0")


def test_tables_for_kubectl_get(sim: KubeSim, core: CoreV1Api) -> None:
    # Given a namespace
    core.create_namespace({"metadata": {"name": "demo"}})

    # When namespaces are listed asking for a Table, as kubectl get does
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    code, table = http("GET", f"{sim.url}/api/v1/namespaces", headers={"Accept": accept})

    # Then the answer has kubectl's columns and one row per namespace
    assert code == 200
    assert table["kind"] == "Table"
    assert [column["name"] for column in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    rows = {row["cells"][0]: row for row in table["rows"]}
    assert rows["demo"]["cells"][1] == "Active"
    assert rows["demo"]["object"]["kind"] == "PartialObjectMetadata"


def test_human_durations() -> None:
    # Given ages in seconds
    # When they are printed
    # Then they read like kubectl's AGE column
    assert [human_duration(s) for s in (5, 119, 150, 600, 7200, 30000, 200000, 900000)] == [
        "5s",
        "119s",
        "2m30s",
        "10m",
        "120m",
        "8h",
        "2d7h",
        "10d",
    ]
