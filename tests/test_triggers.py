"""Signed webhook triggers: the signature and payload bindings (pure), managing triggers over the API, and the
hook GitHub or a registry calls, served over real HTTP on PostgreSQL and Redis (with a real worker where a run
must complete).

Every refused delivery is checked twice: by its answer, and by `GET /api/executions` showing nothing started.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine
from werkzeug.serving import make_server

from api.app import create_app
from orchestrator.errors import BindingError
from orchestrator.policy import Role
from orchestrator.settings import Settings, sqlite_url
from orchestrator.store import Store
from orchestrator.tokens import Tokens
from orchestrator.webhooks import bind_delivery, check_input, sign, signature_matches

from rollway_testing import TERMINAL, ServedApp

Doc = dict[str, Any]
SECRET = "a-webhook-secret-of-some-length"
OTHER_SECRET = "another-webhook-secret-entirely"
PUSH: Doc = {
    "ref": "refs/heads/main",
    "after": "9f1c2a7e0b5d4c3f8a6e1d2b7c9f0a4e5d3c2b1a",
    "repository": {"full_name": "acme/shop", "private": True, "stars": 3},
    "commits": [{"id": "9f1c2a7", "message": "Fix the cart"}],
}


# -- the signature and the bindings, pure


def test_a_signature_in_githubs_format_is_checked_over_the_raw_body() -> None:
    # Given the example GitHub documents for X-Hub-Signature-256
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    documented = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    # When signatures are made and checked
    made = sign(secret, body)

    # Then ours is GitHub's, it matches (in either hex case), and nothing else does
    assert made == documented
    assert signature_matches(secret, body, documented)
    assert signature_matches(secret, body, "sha256=" + documented[7:].upper())
    assert not signature_matches(secret, body + b" ", documented)
    assert not signature_matches("another secret", body, documented)
    for malformed in (None, "", documented[7:], "sha1=" + documented[7:], documented[:-1], documented + "0"):
        assert not signature_matches(secret, body, malformed), malformed


def test_a_whole_binding_keeps_its_json_type_and_a_binding_in_text_is_spliced_as_text() -> None:
    # Given a trigger's input binding the payload and a header
    template = {
        "sha": "${body.after}",
        "repository": "${body.repository}",
        "private": "${body.repository.private}",
        "first": "${body.commits[0].message}",
        "title": "${headers.x-github-event} of ${body.repository.full_name} (${body.repository.stars} stars)",
        "fixed": 7,
    }

    # When it is bound to a delivery
    bound = bind_delivery(template, PUSH, {"X-GitHub-Event": "push"})

    # Then whole values keep their types, spliced ones read as text, header names match in any case
    assert bound == {
        "sha": PUSH["after"],
        "repository": PUSH["repository"],
        "private": True,
        "first": "Fix the cart",
        "title": "push of acme/shop (3 stars)",
        "fixed": 7,
    }


def test_a_binding_the_delivery_does_not_hold_is_named() -> None:
    # Given bindings to a path and a header that the delivery lacks
    template = {"sha": "${body.head_commit.id}", "event": "${headers.X-GitHub-Event}", "ref": "${body.ref}"}

    # When it is bound
    with pytest.raises(BindingError) as raised:
        bind_delivery(template, PUSH, {})

    # Then each missing value is named, at the input it was for
    assert [str(problem) for problem in raised.value.details] == [
        "input.sha: '${body.head_commit.id}': the payload has no value at 'head_commit'",
        "input.event: '${headers.X-GitHub-Event}': the delivery has no header 'X-GitHub-Event'",
    ]


def test_only_body_and_header_bindings_are_accepted_in_a_trigger() -> None:
    # Given a trigger input with a binding of each kind
    template = {"a": "${body.after}", "b": "${input.tag}", "c": "${headers.}", "d": "${body..x}", "e": "${body}"}

    # When it is checked
    problems = check_input(template)

    # Then the pipeline binding, the empty header and the malformed path are refused, each at its input
    assert [problem.path for problem in problems] == ["input.b", "input.c", "input.d"]


# -- helpers over the served API


def pipeline_doc(name: str = "Deploy", project: str = "hooks", enabled: bool = True, **fields: Any) -> Doc:
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": project,
        "enabled": enabled,
        "input": {"sha": "", "repo": "", "event": ""},
        "stageOrder": ["Check"],
        "stages": {
            "Check": {
                "taskOrder": ["Sha"],
                "tasks": {"Sha": {"type": "Condition", "input": {"condition": "${input.sha} != ''"}}},
            }
        },
        **fields,
    }


HOOK_INPUT: Doc = {"sha": "${body.after}", "repo": "${body.repository.full_name}", "event": "${headers.X-GitHub-Event}"}


def trigger_body(name: str = "shop-push", **changes: Any) -> Doc:
    return {"name": name, "project": "hooks", "pipeline": "Deploy", "secret": SECRET, "input": HOOK_INPUT} | changes


def deliver(
    api: ServedApp,
    name: str,
    payload: Doc | None = None,
    secret: str | None = SECRET,
    delivery: str | None = "d-1",
    raw: bytes | None = None,
    signed_body: bytes | None = None,
) -> httpx.Response:
    """POST a delivery the way GitHub does: no bearer token, the raw body signed with `secret` (None: unsigned)."""
    body = raw if raw is not None else json.dumps(PUSH if payload is None else payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body if signed_body is None else signed_body)
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return httpx.post(f"{api.url}/api/triggers/{name}", content=body, headers=headers, timeout=30)


def executions(api: ServedApp) -> list[Doc]:
    answer = api.http.get("/api/executions")
    assert answer.status_code == 200, answer.text
    found: list[Doc] = answer.json()
    return found


def error_of(answer: httpx.Response, status: int) -> Doc:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    error: Doc = body["error"]
    return error


@pytest.fixture
def hook(api: ServedApp) -> Doc:
    """An enabled pipeline Deploy in project hooks, and its trigger shop-push."""
    api.create(pipeline_doc())
    return api.create_at("/api/triggers", trigger_body())


# -- managing triggers


def test_a_trigger_is_created_listed_read_and_deleted_and_its_secret_never_shown(api: ServedApp) -> None:
    # Given an enabled pipeline
    api.create(pipeline_doc())

    # When a trigger is created for it, listed, read, deleted, then read again
    created = api.create_at("/api/triggers", trigger_body())
    listed = api.http.get("/api/triggers").json()
    read = api.http.get(f"/api/triggers/{created['id']}")
    deleted = api.http.delete(f"/api/triggers/{created['id']}")
    gone = api.http.get(f"/api/triggers/{created['id']}")

    # Then every view shows the trigger without its secret, and once deleted it is gone
    assert created["name"] == "shop-push" and created["project"] == "hooks" and created["pipeline"] == "Deploy"
    assert created["input"] == HOOK_INPUT and created["hookLink"] == "/api/triggers/shop-push"
    assert created["createdBy"] == "admin"
    assert listed == [created] and read.json() == created
    for shown in (created, read.text, json.dumps(listed)):
        assert SECRET not in str(shown) and "secret" not in (shown if isinstance(shown, dict) else {})
    assert deleted.status_code == 204
    assert error_of(gone, 404)["message"] == f"there is no trigger with id '{created['id']}'"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"name": "shop push"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"secret": "short-secret"}, "secret"),
        ({"secret": None}, "secret"),
        ({"pipeline": "Missing"}, "pipeline"),
        ({"project": "elsewhere"}, "pipeline"),
        ({"input": ["sha"]}, "input"),
        ({"input": {"sha": "${input.sha}"}}, "input.sha"),
        ({"input": {"colour": "blue"}}, "input.colour"),
    ],
)
def test_a_bad_trigger_is_refused_naming_the_problem(api: ServedApp, changes: Doc, named: str) -> None:
    # Given an enabled pipeline Deploy in project hooks
    api.create(pipeline_doc())

    # When a trigger with one bad field is posted
    answer = api.http.post("/api/triggers", json=trigger_body(**changes))

    # Then it is refused with 400 naming that field, and nothing is created
    error = error_of(answer, 400)
    assert named in {item["path"] for item in error["details"]}, error
    assert api.http.get("/api/triggers").json() == []


def test_a_missing_pipeline_is_named(api: ServedApp) -> None:
    # Given no pipeline named Missing in project hooks
    # When a trigger names it
    answer = api.http.post("/api/triggers", json=trigger_body(pipeline="Missing"))

    # Then the message names the pipeline and the project
    assert error_of(answer, 400)["message"] == "pipeline: project 'hooks' has no pipeline named 'Missing'"


def test_a_trigger_name_is_unique(api: ServedApp, hook: Doc) -> None:
    # Given a trigger shop-push
    # When another trigger of that name is posted
    answer = api.http.post("/api/triggers", json=trigger_body(secret=OTHER_SECRET))

    # Then it conflicts, and the first is untouched
    assert "shop-push" in error_of(answer, 409)["message"]
    assert [item["id"] for item in api.http.get("/api/triggers").json()] == [hook["id"]]


def test_the_management_routes_need_a_token_but_the_hook_does_not(api: ServedApp, hook: Doc) -> None:
    # Given an API with ROLLWAY_API_TOKEN set, and a trigger
    anonymous = httpx.Client(base_url=api.url, timeout=30)

    # When the trigger routes are called without a token, and the hook is called signed but without one
    refused = [
        anonymous.post("/api/triggers", json=trigger_body(name="other")),
        anonymous.get("/api/triggers"),
        anonymous.get(f"/api/triggers/{hook['id']}"),
        anonymous.delete(f"/api/triggers/{hook['id']}"),
    ]
    delivered = deliver(api, "shop-push")

    # Then every management call is 401 and changes nothing, and the delivery starts the pipeline
    assert [answer.status_code for answer in refused] == [401, 401, 401, 401]
    assert [item["name"] for item in api.http.get("/api/triggers").json()] == ["shop-push"]
    assert delivered.status_code == 202, delivered.text
    assert [item["id"] for item in executions(api)] == [delivered.json()["executionId"]]
    anonymous.close()


def test_a_token_of_another_project_sees_no_trigger_and_an_executor_may_not_create_one(
    api: ServedApp, hook: Doc, settings: Settings
) -> None:
    # Given a developer token of project other and an executor token of project hooks
    engine = create_engine(settings.database_url)
    tokens = Tokens(engine)
    _, developer = tokens.add("t-dev", "dev", "other", Role.DEVELOPER, "test")
    _, executor = tokens.add("t-exec", "exec", "hooks", Role.EXECUTOR, "test")
    engine.dispose()

    def as_token(token: str) -> httpx.Client:
        return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    # When each uses the trigger routes
    with as_token(developer) as other, as_token(executor) as runner:
        listed = other.get("/api/triggers").json()
        read = other.get(f"/api/triggers/{hook['id']}")
        deleted = other.delete(f"/api/triggers/{hook['id']}")
        created = runner.post("/api/triggers", json=trigger_body(name="by-executor"))
        elsewhere = other.post("/api/triggers", json=trigger_body(name="into-hooks"))

    # Then the other project's developer finds nothing, the executor may not edit, and the trigger is unchanged
    assert listed == []
    assert error_of(read, 404)["message"] == f"there is no trigger with id '{hook['id']}'"
    assert error_of(deleted, 404)["message"] == f"there is no trigger with id '{hook['id']}'"
    assert error_of(created, 403)
    assert error_of(elsewhere, 403)
    assert [item["name"] for item in api.http.get("/api/triggers").json()] == ["shop-push"]


# -- the hook


def test_a_signed_delivery_starts_the_pipeline_with_the_payload_bound(api: ServedApp, hook: Doc) -> None:
    # Given a trigger whose input binds the commit, the repository and the event
    # When GitHub delivers a signed push
    answer = deliver(api, "shop-push", delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")

    # Then the execution is accepted and holds the bound values, requested by the trigger, naming the delivery
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["duplicate"] is False and accepted["executionIndex"] == 1
    assert accepted["executionLink"] == f"/api/executions/{accepted['executionId']}"
    found = api.http.get(accepted["executionLink"]).json()
    assert found["input"] == {"sha": PUSH["after"], "repo": "acme/shop", "event": "push"}
    assert found["requestBy"] == "trigger:shop-push"
    assert "72d3162e-cc78-11e3-81ab-4c9367dc0958" in found["comments"] and "shop-push" in found["comments"]


def test_an_unsigned_wrongly_signed_or_unknown_delivery_is_refused_alike_and_starts_nothing(
    api: ServedApp, hook: Doc
) -> None:
    # Given a second trigger with a secret of its own
    api.create_at("/api/triggers", trigger_body(name="other-hook", secret=OTHER_SECRET))
    body = json.dumps(PUSH).encode()

    # When deliveries come unsigned, signed wrongly, signed with the other trigger's secret, signed over another
    # body, with a malformed header, and to a trigger that does not exist
    answers = {
        "unsigned": deliver(api, "shop-push", secret=None),
        "wrong secret": deliver(api, "shop-push", secret="not-the-secret-at-all"),
        "another trigger's secret": deliver(api, "shop-push", secret=OTHER_SECRET),
        "another body": deliver(api, "shop-push", raw=body, signed_body=body.replace(b"main", b"mainline")),
        "malformed": httpx.post(
            f"{api.url}/api/triggers/shop-push", content=body, headers={"X-Hub-Signature-256": "sha1=abc"}
        ),
        "unknown name": deliver(api, "no-such-hook"),
        "unknown odd name": deliver(api, "no such hook"),
    }

    # Then each is 401 with the very same answer, and no execution exists
    for case, answer in answers.items():
        assert answer.status_code == 401, (case, answer.text)
    assert len({answer.text for answer in answers.values()}) == 1, {case: a.text for case, a in answers.items()}
    assert "X-Hub-Signature-256" in answers["unknown name"].json()["error"]["message"]
    assert executions(api) == []


def test_a_replayed_delivery_answers_the_same_execution_and_starts_nothing_new(api: ServedApp, hook: Doc) -> None:
    # Given a delivery that started an execution
    first = deliver(api, "shop-push", delivery="delivery-1")
    assert first.status_code == 202, first.text

    # When the same delivery comes again (GitHub's "Redeliver"), then a new delivery of the same push
    again = deliver(api, "shop-push", delivery="delivery-1")
    fresh = deliver(api, "shop-push", delivery="delivery-2")

    # Then the replay answers the first execution, flagged, and only the new delivery starts another
    assert again.status_code == 200, again.text
    assert again.json()["executionId"] == first.json()["executionId"] and again.json()["duplicate"] is True
    assert fresh.status_code == 202 and fresh.json()["executionId"] != first.json()["executionId"]
    assert sorted(item["id"] for item in executions(api)) == sorted(
        [first.json()["executionId"], fresh.json()["executionId"]]
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def either_api(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[ServedApp]:
    """The API served on PostgreSQL (the `api` fixture), then on a fresh SQLite file, over HTTP."""
    if request.param == "postgresql":
        yield request.getfixturevalue("api")
        return
    url = sqlite_url(tmp_path / "rollway.db")
    Store.connect(url).dispose()  # migrated, as `rollway db upgrade` would
    app = create_app(replace(settings, database_url=url))
    served = ServedApp(make_server("127.0.0.1", 0, app, threaded=True))
    yield served
    served.stop()
    app.extensions["rollway"].store.dispose()


def test_the_same_delivery_arriving_eight_times_at_once_starts_one_execution(either_api: ServedApp) -> None:
    # Given a trigger, on each database, and eight copies of one delivery sent at the same moment
    api = either_api
    api.create(pipeline_doc())
    api.create_at("/api/triggers", trigger_body())
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(deliver(api, "shop-push", delivery="delivery-twin"))

    senders = [threading.Thread(target=send) for _ in range(8)]

    # When they are all handled
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    # Then exactly one started an execution, and every other answers that same one
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [202], [a.text for a in answers]
    assert len({answer.json()["executionId"] for answer in answers}) == 1
    assert [item["id"] for item in executions(api)] == [answers[0].json()["executionId"]]


def test_signed_deliveries_the_trigger_cannot_use_are_refused_with_400_and_start_nothing(
    api: ServedApp, hook: Doc
) -> None:
    # Given a trigger binding body.after and the X-GitHub-Event header
    # When signed deliveries come that are not JSON, lack body.after, or carry an oversized delivery id
    not_json = deliver(api, "shop-push", raw=b"payload=%7B%7D")
    no_after = deliver(api, "shop-push", payload={"repository": {"full_name": "acme/shop"}})
    long_id = deliver(api, "shop-push", delivery="d" * 201)

    # Then each is refused with a message naming what is wrong, and nothing runs
    assert "not JSON" in error_of(not_json, 400)["message"]
    error = error_of(no_after, 400)
    assert "${body.after}" in error["message"] and [item["path"] for item in error["details"]] == ["input.sha"]
    assert "X-GitHub-Delivery" in error_of(long_id, 400)["message"]
    assert executions(api) == []


def test_a_delivery_lacking_a_bound_value_but_unsigned_is_refused_as_unsigned(api: ServedApp, hook: Doc) -> None:
    # Given a payload without body.after
    # When it comes unsigned, and not as JSON
    lacking = deliver(api, "shop-push", payload={}, secret=None)
    garbage = deliver(api, "shop-push", raw=b"\xff not json", secret="guess-guess-guess")

    # Then both are 401: nothing about the trigger's input is told before the signature is checked
    assert error_of(lacking, 401) == error_of(garbage, 401)


def test_githubs_ping_is_answered_once_signed_and_starts_nothing(api: ServedApp, hook: Doc) -> None:
    # Given a trigger binding body.after, which GitHub's ping (sent when a hook is added) does not hold
    ping = {"zen": "Keep it logically awesome.", "hook_id": 1}
    body = json.dumps(ping).encode()

    # When a signed ping comes, and an unsigned one
    signed = httpx.post(
        f"{api.url}/api/triggers/shop-push",
        content=body,
        headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(SECRET, body)},
    )
    unsigned = httpx.post(f"{api.url}/api/triggers/shop-push", content=body, headers={"X-GitHub-Event": "ping"})

    # Then the signed one is answered 200 and the unsigned one refused, and neither runs anything
    assert signed.status_code == 200 and signed.json() == {"ping": True, "trigger": "shop-push"}, signed.text
    assert error_of(unsigned, 401)
    assert executions(api) == []


def test_a_delivery_for_a_disabled_pipeline_conflicts_and_can_be_redelivered_once_enabled(api: ServedApp) -> None:
    # Given a trigger of a disabled pipeline
    pipeline = api.create(pipeline_doc(enabled=False))
    api.create_at("/api/triggers", trigger_body())

    # When a delivery comes, then the pipeline is enabled and the delivery is sent again
    refused = deliver(api, "shop-push", delivery="d-disabled")
    api.http.patch(f"/api/pipelines/{pipeline['id']}", json={"enabled": True})
    redelivered = deliver(api, "shop-push", delivery="d-disabled")

    # Then the first is 409 and started nothing, and the redelivery starts the pipeline
    assert "disabled" in error_of(refused, 409)["message"]
    assert redelivered.status_code == 202, redelivered.text
    assert [item["id"] for item in executions(api)] == [redelivered.json()["executionId"]]


def test_a_delivery_over_the_size_limit_is_refused(api: ServedApp, hook: Doc) -> None:
    # Given a signed delivery of more than the API's 2 MB body limit
    big = json.dumps(PUSH | {"padding": "x" * 2_100_000}).encode()

    # When it is delivered
    answer = deliver(api, "shop-push", raw=big)

    # Then it is refused as too large, and nothing runs
    assert answer.status_code == 413, answer.text
    assert executions(api) == []


def test_a_delivery_runs_to_completion_on_a_worker_with_the_commit_it_carries(
    api: ServedApp, worker: Any, web: HTTPServer, wait: Any
) -> None:
    # Given a pipeline whose REST task reports the commit it was started for to a local service
    web.expect_request(f"/builds/{PUSH['after']}", method="POST").respond_with_json({"queued": True})
    report = {"type": "REST", "input": {"action": "post", "url": web.url_for("/builds/${input.sha}")}}
    stages = {"Build": {"taskOrder": ["Report"], "tasks": {"Report": report}}}
    api.create(pipeline_doc(stageOrder=["Build"], stages=stages))
    api.create_at("/api/triggers", trigger_body())

    # When GitHub delivers a signed push
    answer = deliver(api, "shop-push")
    assert answer.status_code == 202, answer.text
    execution_link = answer.json()["executionLink"]

    # Then the execution completes, its input holds the commit, and the service was called for that commit
    done = wait(
        lambda: (found := api.http.get(execution_link).json())["status"] in TERMINAL and found,
        what="the triggered execution to end",
    )
    assert done["status"] == "COMPLETED", done
    assert done["input"]["sha"] == PUSH["after"]
    report_run = done["stages"][0]["tasks"][0]
    assert report_run["output"]["responseCode"] == 200 and report_run["output"]["responseJson"] == {"queued": True}
    web.check_assertions()
