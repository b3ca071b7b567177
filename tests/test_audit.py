"""The audit trail: every request that asked to change something, who asked, in which project, what it got.

Stories run against the API served over HTTP on PostgreSQL and Redis, without a worker.
"""

from __future__ import annotations

from typing import Any

import httpx

from rollway_testing import ServedApp

Doc = dict[str, Any]


def pipeline_doc(name: str, project: str) -> Doc:
    task = {"type": "Condition", "input": {"condition": "1 == 1"}}
    stages = {"Check": {"taskOrder": ["First"], "tasks": {"First": task}}}
    return {"kind": "PIPELINE", "name": name, "project": project, "stageOrder": ["Check"], "stages": stages}


def token(api: ServedApp, name: str, role: str, project: str) -> str:
    return str(api.create_at("/api/tokens", {"name": name, "project": project, "role": role})["token"])


def as_token(api: ServedApp, secret: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def test_changes_and_refusals_are_recorded_with_who_asked_and_reads_are_not(api: ServedApp) -> None:
    # Given a developer and a viewer of project shop
    developer, viewer = token(api, "ci", "developer", "shop"), token(api, "board", "viewer", "shop")

    # When the developer makes a pipeline and a secret variable, the viewer tries to delete the pipeline and
    # both read it
    with as_token(api, developer) as ci, as_token(api, viewer) as board:
        made = ci.post("/api/pipelines", json=pipeline_doc("Release", "shop")).json()
        secret = {"name": "db", "project": "shop", "type": "SECRET", "value": "AUDIT-SECRET-MARK"}
        assert ci.post("/api/variables", json=secret).status_code == 201
        assert board.delete(f"/api/pipelines/{made['id']}").status_code == 403
        assert board.get(f"/api/pipelines/{made['id']}").status_code == 200
        assert ci.get("/api/pipelines").status_code == 200

    # Then the trail holds the three changes asked for, newest first, with actor, project, route and answer
    trail = api.http.get("/api/audit", params={"project": "shop"}).json()
    seen = [(entry["actor"], entry["method"], entry["route"], entry["status"]) for entry in trail[:3]]
    assert seen == [
        ("board", "DELETE", "api.pipelines.delete", 403),
        ("ci", "POST", "api.variables.create", 201),
        ("ci", "POST", "api.pipelines.create", 201),
    ]
    assert {entry["project"] for entry in trail} == {"shop"}
    assert [entry["actor"] for entry in trail[3:]] == ["admin", "admin"]  # the two tokens made first
    assert trail[0]["path"] == f"/api/pipelines/{made['id']}"
    # ... and never what a request carried
    assert "AUDIT-SECRET-MARK" not in api.http.get("/api/audit").text


def test_a_project_admin_reads_the_trail_of_its_own_project_only(api: ServedApp) -> None:
    # Given changes in two projects, and an admin of one of them
    api.create_at("/api/pipelines", pipeline_doc("Shop", "shop"))
    api.create_at("/api/pipelines", pipeline_doc("Bank", "bank"))
    admin = token(api, "shop-admin", "admin", "shop")

    # When it reads the trail, also asking for the other project by name
    with as_token(api, admin) as client:
        own = client.get("/api/audit").json()
        other = client.get("/api/audit", params={"project": "bank"}).json()

    # Then it sees its own project's entries only
    assert own and {entry["project"] for entry in own} == {"shop"}
    assert other == []


def test_the_trail_pages_back_and_refuses_a_bad_limit(api: ServedApp) -> None:
    # Given three changes
    for name in ("One", "Two", "Three"):
        api.create_at("/api/pipelines", pipeline_doc(name, "shop"))

    # When the trail is read two at a time
    first = api.http.get("/api/audit", params={"limit": 2}).json()
    rest = api.http.get("/api/audit", params={"limit": 2, "before": first[-1]["id"]}).json()

    # Then the pages follow each other, and a limit that is not a number is a 400 naming it
    assert len(first) == 2 and len(rest) == 1 and rest[0]["id"] < first[-1]["id"]
    answer = api.http.get("/api/audit", params={"limit": "lots"})
    assert answer.status_code == 400 and "'limit'" in answer.json()["error"]["message"]
