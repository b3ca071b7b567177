"""The endpoints API: credentials are accepted, sealed at rest, and never returned."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import create_engine, select

from orchestrator.schema import endpoints
from orchestrator.settings import Settings

from rollway_testing import TOKEN, ServedApp

Doc = dict[str, Any]
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


def endpoint(name: str = "dev-cluster", **fields: Any) -> Doc:
    return {"name": name, "project": "demo", "type": "kubernetes", "url": "https://10.0.0.1:6443", **fields}


def k8s_pipeline(name: str, server: str | None) -> Doc:
    task: Doc = {"type": "K8S", "input": {"action": "VERIFY", "namespace": "demo", "deployment": "web"}}
    if server is not None:
        task["endpoints"] = {"kubernetesServer": server}
    return {
        "name": name,
        "project": "demo",
        "stageOrder": ["S"],
        "stages": {"S": {"taskOrder": ["V"], "tasks": {"V": task}}},
    }


def test_credentials_go_in_sealed_and_never_come_out(api: ServedApp, settings: Settings) -> None:
    # When an endpoint is created with a token and CA data
    answer = api.http.post("/api/endpoints", json=endpoint(token="eyJ-secret-token", caData=CA))

    # Then the answer says which credentials it has, and shows none of them
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert (created["hasToken"], created["hasCaData"], created["hasKubeconfig"]) == (True, True, False)
    assert "eyJ-secret-token" not in answer.text and CA not in answer.text
    assert "eyJ-secret-token" not in api.http.get("/api/endpoints").text
    # ... and the database holds them sealed, not in the clear
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        sealed = conn.execute(select(endpoints.c.credentials)).scalar_one()
    engine.dispose()
    assert sealed and "eyJ-secret-token" not in sealed and CA not in sealed


def test_an_endpoint_is_listed_patched_and_deleted(api: ServedApp) -> None:
    # Given an endpoint with a token
    created = api.create_at("/api/endpoints", endpoint(token="t1"))

    # When its URL is changed and its token removed
    patched = api.http.patch(f"/api/endpoints/{created['id']}", json={"url": "https://10.0.0.2:6443", "token": None})

    # Then it keeps its id with the new URL and no token; it is listed by project, and deleted
    assert patched.status_code == 200, patched.text
    assert (patched.json()["url"], patched.json()["hasToken"]) == ("https://10.0.0.2:6443", False)
    assert [item["name"] for item in api.http.get("/api/endpoints", params={"project": "demo"}).json()] == [
        "dev-cluster"
    ]
    assert api.http.get("/api/endpoints", params={"project": "other"}).json() == []
    assert api.http.delete(f"/api/endpoints/{created['id']}").status_code == 204
    assert api.http.get(f"/api/endpoints/{created['id']}").status_code == 404


def test_a_moved_endpoint_keeps_no_credential_given_for_its_old_url(api: ServedApp) -> None:
    # Given an endpoint with a token and CA data
    created = api.create_at("/api/endpoints", endpoint(token="t1", caData=CA))
    path = f"/api/endpoints/{created['id']}"

    # When only its URL is changed
    moved = api.http.patch(path, json={"url": "https://10.0.0.2:6443"})

    # Then it keeps neither the token nor the CA data: both belonged to the old server
    assert moved.status_code == 200, moved.text
    assert (moved.json()["hasToken"], moved.json()["hasCaData"]) == (False, False)

    # When the URL changes again with a new token, Then that token is kept; the same URL given again keeps it too
    again = api.http.patch(path, json={"url": "https://10.0.0.3:6443", "token": "t2"})
    assert (again.json()["hasToken"], again.json()["hasCaData"]) == (True, False)
    same = api.http.patch(path, json={"url": "https://10.0.0.3:6443", "insecure": True})
    assert (same.json()["hasToken"], same.json()["insecure"]) == (True, True)


def test_a_wrongly_typed_credential_in_a_patch_is_refused_and_changes_nothing(api: ServedApp) -> None:
    # Given an endpoint with a token
    created = api.create_at("/api/endpoints", endpoint(token="t1"))
    path = f"/api/endpoints/{created['id']}"

    # When a patch gives a token that is not a string, or one that no header could carry
    for token in (5, ["t"], "two\nlines", "with space"):
        answer = api.http.patch(path, json={"token": token})

        # Then it is refused naming the token, never quoting it, and the stored token is still there
        assert answer.status_code == 400, (token, answer.text)
        assert [item["path"] for item in answer.json()["error"]["details"]] == ["token"]
        assert "two" not in answer.text
    after = api.http.get(path).json()
    assert (after["hasToken"], after["updatedAt"]) == (True, created["updatedAt"])


def test_a_bad_endpoint_is_refused_listing_each_problem(api: ServedApp) -> None:
    # When an endpoint with several problems is posted
    body = {"name": "", "type": "vmware", "url": "ftp://x", "caData": "not base64!", "insecure": "yes", "colour": 1}
    answer = api.http.post("/api/endpoints", json=body)

    # Then it is refused, each problem named by its field, nothing is created
    assert answer.status_code == 400
    fields = {item["path"] for item in answer.json()["error"]["details"]}
    assert fields == {"name", "type", "url", "caData", "insecure", "colour"}
    assert api.http.get("/api/endpoints").json() == []
    # ... and a second endpoint of the same name in a project conflicts
    api.create_at("/api/endpoints", endpoint())
    assert api.http.post("/api/endpoints", json=endpoint()).status_code == 409


def test_a_k8s_task_must_name_an_endpoint_that_exists(api: ServedApp) -> None:
    # When K8S pipelines name no endpoint, or one that does not exist
    unnamed = api.http.post("/api/pipelines", json=k8s_pipeline("No Server", None))
    missing = api.http.post("/api/pipelines", json=k8s_pipeline("Missing Server", "prod-cluster"))

    # Then the one naming none is refused at that path; the one naming a missing one is saved disabled, warned
    assert unnamed.status_code == 400
    assert unnamed.json()["error"]["details"][0]["path"] == "stages.S.tasks.V.endpoints.kubernetesServer"
    assert missing.status_code == 201, missing.text
    (warning,) = missing.json()["_warnings"]
    assert warning["path"] == "stages.S.tasks.V.endpoints.kubernetesServer"
    assert "'prod-cluster' does not exist in project 'demo'" in warning["message"]
    assert missing.json()["enabled"] is False

    # When the endpoint exists, Then the pipeline is created, and the endpoint cannot be deleted while in use
    server = api.create_at("/api/endpoints", endpoint("prod-cluster"))
    api.create(k8s_pipeline("Uses Server", "prod-cluster"))
    refused = api.http.delete(f"/api/endpoints/{server['id']}")
    assert refused.status_code == 409 and "'Uses Server'" in refused.json()["error"]["message"]


def test_without_a_secret_key_credentials_are_refused(settings: Settings) -> None:
    # Given an API started without ROLLWAY_SECRET_KEY
    from api.app import create_app

    app = create_app(settings.with_changes(secret_key=None))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    # When an endpoint with a token is created, and one without credentials
    refused = client.post("/api/endpoints", json=endpoint(token="t"), headers=headers)
    accepted = client.post("/api/endpoints", json=endpoint("kubesim", url="http://127.0.0.1:6443"), headers=headers)

    # Then the first is refused saying why, the second created
    assert refused.status_code == 400 and "ROLLWAY_SECRET_KEY" in refused.get_json()["error"]["message"]
    assert accepted.status_code == 201
    app.extensions["rollway"].store.dispose()
