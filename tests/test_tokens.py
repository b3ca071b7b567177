"""API tokens through the HTTP API: made by admins with a name, a project and a role, shown once, kept hashed,
listed without their secrets, revoked; what each role may do with one; and who executions and events name.

Stories run against the API served over HTTP on PostgreSQL and Redis, without a worker (a triggered execution
stays RUNNING with its first task queued).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, select

from api.cli import cli
from orchestrator.schema import tokens
from orchestrator.settings import Settings

from rollway_testing import TOKEN, ServedApp

Doc = dict[str, Any]


def pipeline_doc(name: str, project: str | None = "shop", **fields: Any) -> Doc:
    """A small valid pipeline (one Condition task); without `project` when None."""
    task = {"type": "Condition", "input": {"condition": "1 == 1"}}
    document: Doc = {"kind": "PIPELINE", "name": name, "stageOrder": ["Check"]}
    document["stages"] = {"Check": {"taskOrder": ["First"], "tasks": {"First": task}}}
    if project is not None:
        document["project"] = project
    return document | fields


def made_token(api: ServedApp, name: str, role: str, project: str = "shop") -> Doc:
    """A token made by the bootstrap admin."""
    return api.create_at("/api/tokens", {"name": name, "project": project, "role": role})


@contextmanager
def client_with(api: ServedApp, secret: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        yield client


def error_of(answer: httpx.Response, status: int) -> Doc:
    assert answer.status_code == status, answer.text
    error: Doc = answer.json()["error"]
    return error


def started(client: httpx.Client, pipeline: Doc) -> str:
    answer = client.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["executionId"])


# -- making, using, listing and revoking


def test_a_token_is_shown_once_works_is_listed_without_its_secret_and_is_refused_once_revoked(
    api: ServedApp, settings: Settings
) -> None:
    # Given the bootstrap admin makes a developer token in project shop
    made = made_token(api, "ci-bot", "developer")
    secret = made["token"]

    # Then the answer shows the token once, with what it may do and who made it
    assert set(made) == {"id", "name", "project", "role", "createdBy", "createdAt", "lastUsedAt", "token"}
    assert (made["name"], made["project"], made["role"], made["createdBy"]) == ("ci-bot", "shop", "developer", "admin")
    assert secret.startswith("rw_") and len(secret) > 40

    # When the token is used
    with client_with(api, secret) as bot:
        created = bot.post("/api/pipelines", json=pipeline_doc("Built"))
    assert created.status_code == 201, created.text

    # Then the list shows it used, without the token or its hash; the database holds only the hash
    listed = api.http.get("/api/tokens").json()
    assert [item["name"] for item in listed] == ["ci-bot"]
    assert "token" not in listed[0] and listed[0]["lastUsedAt"] is not None
    assert secret not in api.http.get("/api/tokens").text
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(tokens)).one()
    engine.dispose()
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in [str(value) for value in stored]

    # When it is revoked
    revoked = api.http.delete(f"/api/tokens/{made['id']}")

    # Then it answers 401 from then on, and is gone from the list; revoking again is a 404
    assert revoked.status_code == 204, revoked.text
    with client_with(api, secret) as bot:
        assert "unknown or revoked" in error_of(bot.get("/api/pipelines"), 401)["message"]
    assert api.http.get("/api/tokens").json() == []
    error_of(api.http.delete(f"/api/tokens/{made['id']}"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project": "shop", "role": "viewer"}, "name"),
        ({"name": "", "project": "shop", "role": "viewer"}, "name"),
        ({"name": 7, "project": "shop", "role": "viewer"}, "name"),
        ({"name": "x" * 201, "project": "shop", "role": "viewer"}, "name"),
        ({"name": "bad\nname", "project": "shop", "role": "viewer"}, "name"),
        ({"name": "bot", "project": "shop"}, "role"),
        ({"name": "bot", "project": "shop", "role": "owner"}, "role"),
        ({"name": "bot", "project": ["shop"], "role": "viewer"}, "project"),
        ({"name": "bot", "project": " shop", "role": "viewer"}, "project"),
        ({"name": "bot", "project": "shop", "role": "viewer", "expires": 3}, "expires"),
    ],
)
def test_a_bad_token_request_is_refused_naming_the_field(api: ServedApp, body: Doc, field: str) -> None:
    # Given a request to make a token with one bad field
    # When it is sent
    answer = api.http.post("/api/tokens", json=body)

    # Then it is refused with 400 naming that field, and no token is made
    error = error_of(answer, 400)
    assert field in error["message"] or field in {item["path"] for item in error["details"]}, error
    assert api.http.get("/api/tokens").json() == []


# -- what each role may do


def test_a_viewer_reads_but_cannot_trigger_edit_or_cancel(api: ServedApp) -> None:
    # Given an enabled pipeline with a running execution in project shop, and a viewer token there
    pipeline = api.create(pipeline_doc("Release", enabled=True))
    execution = started(api.http, pipeline)
    viewer = made_token(api, "auditor", "viewer")

    with client_with(api, viewer["token"]) as client:
        # When the viewer reads, and tries to trigger, edit and cancel
        reads = [
            client.get(f"/api/pipelines/{pipeline['id']}"),
            client.get(f"/api/executions/{execution}"),
            client.get(f"/api/executions/{execution}/events"),
            client.get("/api/pipelines"),
        ]
        trigger = client.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
        edit = client.patch(f"/api/pipelines/{pipeline['id']}", json={"enabled": False})
        cancel = client.post(f"/api/executions/{execution}/cancel")

    # Then reading works, and the rest is 403 naming the role; nothing ran or changed
    assert [answer.status_code for answer in reads] == [200, 200, 200, 200]
    for refused in (trigger, edit, cancel):
        assert "viewer role may not" in error_of(refused, 403)["message"]
    assert len(api.http.get("/api/executions").json()) == 1
    assert api.http.get(f"/api/executions/{execution}").json()["status"] == "RUNNING"
    assert api.http.get(f"/api/pipelines/{pipeline['id']}").json()["enabled"] is True


def test_an_executor_triggers_and_cancels_but_cannot_edit(api: ServedApp) -> None:
    # Given an enabled pipeline in project shop and an executor token there
    pipeline = api.create(pipeline_doc("Release", enabled=True))
    executor = made_token(api, "release-manager", "executor")

    with client_with(api, executor["token"]) as client:
        # When the executor triggers it, cancels the run, and tries to edit and to make a pipeline
        execution = started(client, pipeline)
        cancel = client.post(f"/api/executions/{execution}/cancel")
        edit = client.patch(f"/api/pipelines/{pipeline['id']}", json={"enabled": False})
        create = client.post("/api/pipelines", json=pipeline_doc("Another"))
        endpoint = client.post("/api/endpoints", json={"name": "c", "project": "shop", "url": "https://127.0.0.1:1"})

    # Then the run started and was canceled; editing is 403
    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["status"] == "CANCELED"
    for refused in (edit, create, endpoint):
        assert "executor role may not edit" in error_of(refused, 403)["message"]
    assert [item["name"] for item in api.http.get("/api/pipelines").json()] == ["Release"]


def test_a_developer_edits_but_cannot_make_or_list_tokens(api: ServedApp) -> None:
    # Given a developer token in project shop
    developer = made_token(api, "dev", "developer")

    with client_with(api, developer["token"]) as client:
        # When it makes a pipeline, and tries to make, list and revoke tokens
        created = client.post("/api/pipelines", json=pipeline_doc("Mine"))
        make = client.post("/api/tokens", json={"name": "more", "project": "shop", "role": "admin"})
        listing = client.get("/api/tokens")
        revoke = client.delete(f"/api/tokens/{developer['id']}")

    # Then the pipeline is made, and every token call is 403; no token was made or revoked
    assert created.status_code == 201, created.text
    for refused in (make, listing, revoke):
        assert "developer role may not administer" in error_of(refused, 403)["message"]
    assert [item["name"] for item in api.http.get("/api/tokens").json()] == ["dev"]


def test_a_project_admin_manages_the_tokens_of_its_own_project_only(api: ServedApp) -> None:
    # Given an admin token of project shop, and a token of project bank
    admin = made_token(api, "shop-admin", "admin")
    bank = made_token(api, "bank-bot", "viewer", project="bank")

    with client_with(api, admin["token"]) as client:
        # When it makes tokens in its own project (by name and by default), and in bank; lists; revokes bank's
        own = client.post("/api/tokens", json={"name": "shop-ci", "project": "shop", "role": "developer"})
        defaulted = client.post("/api/tokens", json={"name": "shop-viewer", "role": "viewer"})
        other = client.post("/api/tokens", json={"name": "sneaky", "project": "bank", "role": "admin"})
        listing = client.get("/api/tokens")
        asked_for_bank = client.get("/api/tokens", params={"project": "bank"})
        revoke_bank = client.delete(f"/api/tokens/{bank['id']}")

    # Then its own project's tokens are made; bank's is 403; it sees and revokes only shop's
    assert own.status_code == 201 and own.json()["createdBy"] == "shop-admin", own.text
    assert defaulted.status_code == 201 and defaulted.json()["project"] == "shop", defaulted.text
    assert "project 'shop' only, not 'bank'" in error_of(other, 403)["message"]
    assert sorted(item["name"] for item in listing.json()) == ["shop-admin", "shop-ci", "shop-viewer"]
    assert asked_for_bank.json() == []
    assert error_of(revoke_bank, 404)["message"] == f"there is no token with id '{bank['id']}'"

    # And the bootstrap admin sees every project's tokens, bank's still among them
    everything = api.http.get("/api/tokens").json()
    assert sorted(item["name"] for item in everything) == ["bank-bot", "shop-admin", "shop-ci", "shop-viewer"]


def test_a_project_token_makes_pipelines_in_its_project_and_never_in_another(api: ServedApp) -> None:
    # Given a developer token of project shop, and a pipeline of project bank
    developer = made_token(api, "dev", "developer")
    bank = api.create(pipeline_doc("Vault", project="bank"))

    with client_with(api, developer["token"]) as client:
        # When it posts a pipeline without a project, one naming bank, and touches bank's pipeline
        unnamed = client.post("/api/pipelines", json=pipeline_doc("Unnamed", project=None))
        elsewhere = client.post("/api/pipelines", json=pipeline_doc("Elsewhere", project="bank"))
        read = client.get(f"/api/pipelines/{bank['id']}")
        moved = client.put(f"/api/pipelines/{unnamed.json()['id']}", json=pipeline_doc("Unnamed", project="bank"))

    # Then the first goes in shop; naming bank, or moving a pipeline there, is 403; bank's pipeline is a 404
    assert unnamed.status_code == 201 and unnamed.json()["project"] == "shop", unnamed.text
    assert "project 'shop' only, not 'bank'" in error_of(elsewhere, 403)["message"]
    assert "project 'shop' only, not 'bank'" in error_of(moved, 403)["message"]
    assert error_of(read, 404)["message"] == f"there is no pipeline with id '{bank['id']}'"
    assert sorted(item["name"] for item in api.http.get("/api/pipelines", params={"project": "bank"}).json()) == [
        "Vault"
    ]


def test_a_project_token_links_rollbacks_only_within_its_own_project(api: ServedApp) -> None:
    # Given pipelines named Undo in projects bank and default, none in shop, and a developer token of shop
    api.create(pipeline_doc("Undo", project="bank"))
    api.create(pipeline_doc("Undo", project="default"))
    developer = made_token(api, "dev", "developer")
    linked = pipeline_doc("Release", project=None)
    linked["stages"]["Check"]["rollback"] = {"pipeline": "Undo"}

    # When it posts a pipeline without a project whose stage rolls back with Undo
    with client_with(api, developer["token"]) as client:
        answer = client.post("/api/pipelines", json=linked)

    # Then it is refused: the link is looked up in shop, the token's project, where there is no Undo
    error = error_of(answer, 400)
    assert any("'Undo' does not exist in project 'shop'" in item["message"] for item in error["details"]), error


# -- who is named


def test_request_by_and_the_event_actors_are_the_token_name(api: ServedApp) -> None:
    # Given an enabled pipeline and an executor token named release-manager
    pipeline = api.create(pipeline_doc("Release", enabled=True))
    executor = made_token(api, "release-manager", "executor")

    # When that token triggers it and cancels the run, and the bootstrap token triggers it once more
    with client_with(api, executor["token"]) as client:
        execution = started(client, pipeline)
        canceled = client.post(f"/api/executions/{execution}/cancel")
    by_admin = started(api.http, pipeline)

    # Then requestBy, the cancel message and every event of the run name the token; the bootstrap token is admin
    assert api.http.get(f"/api/executions/{execution}").json()["requestBy"] == "release-manager"
    assert canceled.json()["statusMessage"] == "canceled by release-manager"
    events = api.http.get(f"/api/executions/{execution}/events").json()
    assert [(event["status"], event["actor"]) for event in events if event["task"] is None] == [
        ("RUNNING", "release-manager"),
        ("CANCELED", "release-manager"),
    ]
    assert {event["actor"] for event in events if event["status"] == "CANCELED"} == {"release-manager"}
    assert api.http.get(f"/api/executions/{by_admin}").json()["requestBy"] == "admin"


# -- the command line


def rollway(api: ServedApp, *args: str, token: str = TOKEN) -> Result:
    """`rollway --url <api> ARGS` with `token` in the environment."""
    env = {"ROLLWAY_API_TOKEN": token, "ROLLWAY_URL": None}
    return CliRunner().invoke(cli, ["--url", api.url, *args], env=env)


def test_rollway_token_creates_lists_and_revokes_tokens(api: ServedApp) -> None:
    # Given the bootstrap token in the environment
    # When `rollway token create` makes a viewer of project shop
    made = rollway(api, "token", "create", "dashboard", "--project", "shop", "--role", "viewer")

    # Then the token alone is printed on standard output (the note goes to standard error), and it works
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("rw_") and "viewer of project shop" in made.stderr
    with client_with(api, secret) as client:
        assert client.get("/api/pipelines").status_code == 200

    # When the tokens are listed, then the one is revoked
    listing = rollway(api, "token", "list")
    token_id = api.http.get("/api/tokens").json()[0]["id"]
    revoked = rollway(api, "token", "revoke", token_id)

    # Then the list names it without the secret, and once revoked it is refused
    assert listing.exit_code == 0 and "dashboard" in listing.output and secret not in listing.output, listing.output
    assert revoked.exit_code == 0 and token_id in revoked.output, revoked.output
    with client_with(api, secret) as client:
        assert client.get("/api/pipelines").status_code == 401


def test_rollway_token_with_a_token_that_may_not_says_why_in_one_line(api: ServedApp) -> None:
    # Given a developer token
    developer = made_token(api, "dev", "developer")

    # When it tries to make a token from the command line
    result = rollway(api, "token", "create", "more", "--role", "admin", token=developer["token"])

    # Then it fails with the API's reason, no traceback
    assert result.exit_code == 1
    assert "developer role may not administer" in result.output and "Traceback" not in result.output


def test_whoami_tells_a_token_its_name_role_and_project(api: ServedApp) -> None:
    # Given a viewer of project shop, and the bootstrap token
    viewer = made_token(api, "board", "viewer")

    # When each asks who it is
    with client_with(api, viewer["token"]) as client:
        scoped = client.get("/api/whoami").json()
    bootstrap = api.http.get("/api/whoami").json()

    # Then the viewer is named with its project, the bootstrap token is admin of every project
    assert scoped == {"name": "board", "role": "viewer", "project": "shop"}
    assert bootstrap == {"name": "admin", "role": "admin", "project": None}


def test_rollway_apply_with_a_project_token_updates_the_pipeline_it_made(api: ServedApp, tmp_path: Path) -> None:
    # Given a developer of project shop and a pipeline file that names no project
    developer = made_token(api, "ci", "developer")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(pipeline_doc("Release", project=None)))

    # When it is applied twice, the second time with a description
    first = rollway(api, "apply", "-f", str(path), token=developer["token"])
    path.write_text(yaml.safe_dump(pipeline_doc("Release", project=None, description="second")))
    second = rollway(api, "apply", "-f", str(path), token=developer["token"])

    # Then the first creates it in shop and the second updates that one, instead of failing on a duplicate
    assert first.exit_code == 0 and "pipeline shop/Release created" in first.output, first.output
    assert second.exit_code == 0 and "pipeline shop/Release updated" in second.output, second.output
    listed = api.http.get("/api/pipelines", params={"name": "Release"}).json()
    assert [(item["project"], item.get("description")) for item in listed] == [("shop", "second")]
