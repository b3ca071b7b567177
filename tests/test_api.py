"""The HTTP API as a client sees it: pipelines (create, read, replace, patch, delete, export), triggering
executions, listing and reading them, authentication, and the error shape for every kind of bad request.

Most stories run against the API served over real HTTP on PostgreSQL and Redis, with no worker: a triggered
execution stays RUNNING with its first tasks QUEUED in Redis, which is what these tests look at. The fuzz
stories use Flask's test client on the same app and the same PostgreSQL, where values a database cannot
hold (NUL characters, oversized names) are refused.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.app import create_app
from orchestrator.settings import Settings

from rollway_testing import TOKEN, ServedApp

Doc = dict[str, Any]
FUZZ = hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- helpers


@pytest.fixture
def client(settings: Settings) -> Iterator[FlaskClient]:
    """Flask's test client on the app (the same one `api` serves), with the token."""
    app = create_app(settings)
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    yield test_client
    app.extensions["rollway"].store.dispose()


def condition_task(condition: str = "1 == 1") -> Doc:
    return {"type": "Condition", "input": {"condition": condition}}


def pipeline_doc(name: str, project: str = "api", **fields: Any) -> Doc:
    """A small valid pipeline: one stage of two Condition tasks, run one after the other."""
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": project,
        "stageOrder": ["Check"],
        "stages": {
            "Check": {
                "taskOrder": ["First", "Second"],
                "tasks": {"First": condition_task(), "Second": condition_task()},
            }
        },
        **fields,
    }


def enabled(api: ServedApp, document: Doc) -> Doc:
    return api.create({**document, "enabled": True})


def trigger(api: ServedApp, pipeline: Doc, body: Doc | None = None) -> httpx.Response:
    return api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json=body if body is not None else {})


def triggered(api: ServedApp, pipeline: Doc, given_input: Doc | None = None) -> Doc:
    answer = trigger(api, pipeline, {"input": given_input or {}})
    assert answer.status_code == 202, answer.text
    found: Doc = answer.json()
    return found


def listed(api: ServedApp, **params: Any) -> list[Doc]:
    answer = api.http.get("/api/executions", params=params)
    assert answer.status_code == 200, answer.text
    rows: list[Doc] = answer.json()
    return rows


def error_of(answer: httpx.Response | Any, status: int, code: str | None = None) -> Doc:
    """The `error` object of an answer, after checking its status and the contract's shape."""
    assert answer.status_code == status, answer.text if hasattr(answer, "text") else answer.get_data(as_text=True)
    body = answer.json() if isinstance(answer, httpx.Response) else answer.get_json()
    assert_error_shape(body)
    if code is not None:
        assert body["error"]["code"] == code, body
    error: Doc = body["error"]
    return error


def assert_error_shape(body: object) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert "Traceback" not in error["message"], body
    assert isinstance(error["details"], list), body
    for item in error["details"]:
        assert set(item) == {"path", "message"} and all(isinstance(value, str) for value in item.values()), body


def paths(error: Doc) -> set[str]:
    return {item["path"] for item in error["details"]}


def without_identity(view: Doc) -> Doc:
    return {key: value for key, value in view.items() if key not in ("id", "name", "createdAt", "updatedAt")}


# -- creating pipelines


def test_a_json_pipeline_is_created_disabled_with_an_id(api: ServedApp) -> None:
    # Given a pipeline document that says nothing about being enabled
    document = pipeline_doc("Release")

    # When it is posted as JSON
    answer = api.http.post("/api/pipelines", json=document)

    # Then it is created, with an id, disabled, and readable under that id
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["id"] and created["name"] == "Release" and created["project"] == "api"
    assert created["enabled"] is False
    assert api.http.get(f"/api/pipelines/{created['id']}").json() == created


def test_a_yaml_pipeline_is_created(api: ServedApp) -> None:
    # Given a pipeline written in YAML, with a stage and task names holding spaces
    text = """
kind: PIPELINE
name: Yaml-Release
project: api
input: {version: ""}
_inputMeta: {version: {mandatory: true, description: the version}}
stageOrder: [Smoke Tests]
stages:
  Smoke Tests:
    taskOrder: [Check Version]
    tasks:
      Check Version: {type: Condition, input: {condition: "${input.version} != ''"}}
"""

    # When it is posted with a YAML content type
    answer = api.http.post("/api/pipelines", content=text, headers={"Content-Type": "application/yaml"})

    # Then it is created as written
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["id"] and created["enabled"] is False
    assert created["stageOrder"] == ["Smoke Tests"]
    assert created["_inputMeta"] == {"version": {"mandatory": True, "description": "the version"}}
    assert created["stages"]["Smoke Tests"]["tasks"]["Check Version"]["type"] == "Condition"


def test_a_duplicate_name_in_a_project_conflicts_but_another_project_may_reuse_it(api: ServedApp) -> None:
    # Given a pipeline named Release in project api
    api.create(pipeline_doc("Release"))

    # When another pipeline of that name is posted to the same project, then to another project
    duplicate = api.http.post("/api/pipelines", json=pipeline_doc("Release"))
    elsewhere = api.http.post("/api/pipelines", json=pipeline_doc("Release", project="other"))

    # Then the first is refused with 409 naming the name, and the second is created
    error = error_of(duplicate, 409, "conflict")
    assert "Release" in error["message"]
    assert elsewhere.status_code == 201, elsewhere.text
    assert {item["project"] for item in api.http.get("/api/pipelines", params={"name": "Release"}).json()} == {
        "api",
        "other",
    }


def test_every_problem_of_a_document_is_listed_with_its_path(api: ServedApp) -> None:
    # Given a document with many problems at once
    document = {
        "kind": "PIPELINE",
        "name": "Broken",
        "concurrency": 0,
        "colour": "blue",
        "stageOrder": ["Build", "Ghost"],
        "stages": {
            "Build": {
                "taskOrder": ["Fetch", "Check"],
                "tasks": {
                    "Fetch": {"type": "REST", "input": {"action": "fetch", "url": "ftp://example.com"}},
                    "Check": {"type": "Teleport", "input": {}},
                },
            }
        },
    }

    # When it is posted
    answer = api.http.post("/api/pipelines", json=document)

    # Then one answer lists each problem at its path
    error = error_of(answer, 400, "pipeline_invalid")
    assert {
        "concurrency",
        "colour",
        "stageOrder[1]",
        "stages.Build.tasks.Fetch.input.action",
        "stages.Build.tasks.Fetch.input.url",
        "stages.Build.tasks.Check.type",
    } <= paths(error), error
    messages = {item["path"]: item["message"] for item in error["details"]}
    assert "Ghost" in messages["stageOrder[1]"]
    assert "Teleport" in messages["stages.Build.tasks.Check.type"]
    # ... and nothing was saved
    assert api.http.get("/api/pipelines", params={"name": "Broken"}).json() == []


def test_bad_bindings_are_listed_with_the_path_of_the_string_that_holds_them(api: ServedApp) -> None:
    # Given a pipeline whose first task reads the output of a task that runs after it, and an unknown input
    document = pipeline_doc("Bindings")
    document["stages"]["Check"]["tasks"]["First"] = condition_task("${Check.Second.output.result} == true")
    document["output"] = {"version": "${input.nope}"}

    # When it is posted
    error = error_of(api.http.post("/api/pipelines", json=document), 400, "pipeline_invalid")

    # Then both bindings are named at their paths
    assert {"stages.Check.tasks.First.input.condition", "output.version"} <= paths(error), error


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"name": "x", ', "application/json", "not valid JSON"),
        (b"name: [unclosed\nstages: {", "application/yaml", "not valid YAML"),
        (b'[{"name": "x"}]', "application/json", "must be an object"),
        (b"", "application/json", "empty"),
        (b"", None, "empty"),
        (b"  \n", "application/yaml", "empty"),
        (b"just some words", "text/plain", "must be an object"),
    ],
    ids=["malformed-json", "malformed-yaml", "json-array", "empty-json", "empty-untyped", "blank-yaml", "scalar"],
)
def test_a_body_that_is_not_a_document_is_refused_with_a_message_naming_why(
    client: FlaskClient, body: bytes, content_type: str | None, expected: str
) -> None:
    # Given a body that is not a pipeline document at all
    # When it is posted as a pipeline
    answer = client.post("/api/pipelines", data=body, content_type=content_type)

    # Then it is refused with a 400 whose message (or its one detail) says what is wrong
    error = error_of(answer, 400)
    said = " ".join([error["message"], *(item["message"] for item in error["details"])])
    assert expected in said, error


def test_a_rollback_link_to_a_pipeline_that_does_not_exist_is_refused(api: ServedApp) -> None:
    # Given a pipeline whose stage names a rollback pipeline nobody created
    document = pipeline_doc("Linked")
    document["stages"]["Check"]["rollback"] = {"pipeline": "Linked_Rollback", "input": {}}

    # When it is posted
    error = error_of(api.http.post("/api/pipelines", json=document), 400, "pipeline_invalid")

    # Then the link is named as the problem
    assert paths(error) == {"stages.Check.rollback.pipeline"}, error
    assert "Linked_Rollback" in error["details"][0]["message"]

    # ... and once the rollback pipeline exists, the same document is accepted
    api.create(pipeline_doc("Linked_Rollback"))
    assert api.http.post("/api/pipelines", json=document).status_code == 201


# -- reading, replacing, patching, deleting, exporting


def test_pipelines_are_listed_and_filtered_by_project_and_name(api: ServedApp) -> None:
    # Given three pipelines in two projects
    api.create(pipeline_doc("Alpha"))
    api.create(pipeline_doc("Beta"))
    api.create(pipeline_doc("Alpha", project="other"))

    # When they are listed with and without filters
    everything = api.http.get("/api/pipelines").json()
    in_api = api.http.get("/api/pipelines", params={"project": "api"}).json()
    alphas = api.http.get("/api/pipelines", params={"name": "Alpha"}).json()
    one = api.http.get("/api/pipelines", params={"project": "other", "name": "Alpha"}).json()
    none = api.http.get("/api/pipelines", params={"project": "nobody"}).json()

    # Then each filter narrows the list
    assert sorted((item["project"], item["name"]) for item in everything) == [
        ("api", "Alpha"),
        ("api", "Beta"),
        ("other", "Alpha"),
    ]
    assert sorted(item["name"] for item in in_api) == ["Alpha", "Beta"]
    assert sorted(item["project"] for item in alphas) == ["api", "other"]
    assert [(item["project"], item["name"]) for item in one] == [("other", "Alpha")]
    assert none == []


def test_an_unknown_pipeline_id_is_a_404_on_every_pipeline_route(api: ServedApp) -> None:
    # Given no pipeline with this id
    unknown = "00000000-0000-0000-0000-000000000000"

    # When each route is called on it
    answers = [
        api.http.get(f"/api/pipelines/{unknown}"),
        api.http.put(f"/api/pipelines/{unknown}", json=pipeline_doc("X")),
        api.http.patch(f"/api/pipelines/{unknown}", json={"enabled": True}),
        api.http.delete(f"/api/pipelines/{unknown}"),
        api.http.get(f"/api/pipelines/{unknown}/export"),
        api.http.post(f"/api/pipelines/{unknown}/executions", json={}),
    ]

    # Then every one is a 404 in the error shape naming the id
    for answer in answers:
        error = error_of(answer, 404, "not_found")
        assert unknown in error["message"]


def test_put_replaces_the_document_and_a_rename_onto_an_existing_name_conflicts(api: ServedApp) -> None:
    # Given two pipelines
    first = api.create(pipeline_doc("First"))
    api.create(pipeline_doc("Second"))

    # When the first is replaced by a document with one task and a description
    replacement = pipeline_doc("First", description="now shorter")
    replacement["stages"]["Check"] = {"taskOrder": ["Only"], "tasks": {"Only": condition_task("2 > 1")}}
    answer = api.http.put(f"/api/pipelines/{first['id']}", json=replacement)

    # Then the pipeline under that id is the new document
    assert answer.status_code == 200, answer.text
    stored = api.http.get(f"/api/pipelines/{first['id']}").json()
    assert stored["description"] == "now shorter"
    assert stored["stages"]["Check"]["taskOrder"] == ["Only"]
    assert stored["createdAt"] == first["createdAt"]

    # When it is renamed onto the second one's name
    clash = api.http.put(f"/api/pipelines/{first['id']}", json=pipeline_doc("Second"))

    # Then it is refused and nothing changed
    error = error_of(clash, 409, "conflict")
    assert "Second" in error["message"]
    assert api.http.get(f"/api/pipelines/{first['id']}").json()["name"] == "First"


def test_put_with_an_invalid_document_lists_its_problems_and_keeps_the_pipeline(api: ServedApp) -> None:
    # Given a pipeline
    created = api.create(pipeline_doc("Keep"))

    # When a document with no stages is put in its place
    answer = api.http.put(f"/api/pipelines/{created['id']}", json={"name": "Keep", "stageOrder": []})

    # Then it is refused with the path of the problem and the pipeline is as it was
    assert "stageOrder" in paths(error_of(answer, 400, "pipeline_invalid"))
    assert api.http.get(f"/api/pipelines/{created['id']}").json() == created


def test_patch_enables_a_pipeline_and_refuses_bad_values_and_unknown_fields(api: ServedApp) -> None:
    # Given a disabled pipeline
    created = api.create(pipeline_doc("Toggle"))

    # When it is patched to enabled
    answer = api.http.patch(f"/api/pipelines/{created['id']}", json={"enabled": True})

    # Then it is enabled, and everything else is as it was
    assert answer.status_code == 200, answer.text
    assert answer.json()["enabled"] is True
    assert without_identity(answer.json()) == without_identity(created) | {"enabled": True}

    # When it is patched with a string for a flag, or a field PATCH does not change
    not_a_flag = api.http.patch(f"/api/pipelines/{created['id']}", json={"enabled": "maybe"})
    unknown = api.http.patch(f"/api/pipelines/{created['id']}", json={"name": "Renamed"})
    not_an_object = api.http.patch(f"/api/pipelines/{created['id']}", json=[{"enabled": False}])

    # Then each is refused saying why, and the pipeline stays enabled
    assert paths(error_of(not_a_flag, 400)) == {"enabled"}
    assert "name" in error_of(unknown, 400, "bad_request")["message"]
    assert "object" in error_of(not_an_object, 400, "bad_request")["message"]
    assert api.http.get(f"/api/pipelines/{created['id']}").json()["enabled"] is True


def test_patch_changes_concurrency_and_description(api: ServedApp) -> None:
    # Given a pipeline
    created = api.create(pipeline_doc("Tuned"))

    # When its concurrency and description are patched, then a concurrency out of range is tried
    answer = api.http.patch(f"/api/pipelines/{created['id']}", json={"concurrency": 3, "description": "tuned"})
    too_many = api.http.patch(f"/api/pipelines/{created['id']}", json={"concurrency": 100000})

    # Then the first is saved and the second refused at its path
    assert answer.status_code == 200, answer.text
    assert (answer.json()["concurrency"], answer.json()["description"]) == (3, "tuned")
    assert paths(error_of(too_many, 400)) == {"concurrency"}
    assert api.http.get(f"/api/pipelines/{created['id']}").json()["concurrency"] == 3


def test_delete_answers_204_then_the_pipeline_is_gone(api: ServedApp) -> None:
    # Given a pipeline
    created = api.create(pipeline_doc("Doomed"))

    # When it is deleted
    answer = api.http.delete(f"/api/pipelines/{created['id']}")

    # Then the answer is an empty 204, and the pipeline is no longer there
    assert answer.status_code == 204 and answer.content == b""
    error_of(api.http.get(f"/api/pipelines/{created['id']}"), 404, "not_found")
    error_of(api.http.delete(f"/api/pipelines/{created['id']}"), 404, "not_found")
    assert api.http.get("/api/pipelines", params={"name": "Doomed"}).json() == []


def test_a_pipeline_named_as_a_rollback_cannot_be_deleted_while_linked(api: ServedApp) -> None:
    # Given a rollback pipeline and a pipeline whose task links to it
    target = api.create(pipeline_doc("Undo"))
    document = pipeline_doc("Release")
    document["stages"]["Check"]["tasks"]["Second"]["rollback"] = {"pipeline": "Undo"}
    linking = api.create(document)

    # When the rollback pipeline is deleted
    answer = api.http.delete(f"/api/pipelines/{target['id']}")

    # Then it is refused naming the pipeline that links to it, and it is still there
    error = error_of(answer, 409, "conflict")
    assert "Release" in error["message"]
    assert api.http.get(f"/api/pipelines/{target['id']}").status_code == 200

    # ... and once the link is gone, it can be deleted
    assert api.http.put(f"/api/pipelines/{linking['id']}", json=pipeline_doc("Release")).status_code == 200
    assert api.http.delete(f"/api/pipelines/{target['id']}").status_code == 204


def test_an_exported_pipeline_posted_back_under_another_name_is_the_same_pipeline(api: ServedApp) -> None:
    # Given a pipeline using most of the document: inputs, outputs, parallel tasks, a precondition,
    # ignoreFailure, a stage rollback with bound input
    api.create(pipeline_doc("Undo", input={"reason": ""}))
    document = {
        "kind": "PIPELINE",
        "name": "Full",
        "project": "api",
        "description": "all the parts",
        "enabled": True,
        "concurrency": 4,
        "input": {"version": "", "dryRun": False},
        "_inputMeta": {"version": {"mandatory": True, "description": "what to release"}},
        "output": {"checked": "${Build.Check A.output.result}"},
        "tags": ["team-a"],
        "stageOrder": ["Build", "Ship"],
        "stages": {
            "Build": {
                "taskOrder": ["Check A,Check B"],
                "tasks": {
                    "Check A": condition_task("${input.version} != ''"),
                    "Check B": {**condition_task("1 < 2"), "ignoreFailure": True},
                },
                "rollback": {"pipeline": "Undo", "input": {"reason": "build ${input.version}"}},
            },
            "Ship": {
                "taskOrder": ["Go"],
                "tasks": {"Go": {**condition_task(), "preCondition": "${input.dryRun} == false"}},
            },
        },
    }
    original = api.create(document)

    # When it is exported
    export = api.http.get(f"/api/pipelines/{original['id']}/export")

    # Then the export is a YAML attachment of the document
    assert export.status_code == 200, export.text
    assert export.headers["content-type"].startswith("application/yaml")
    assert 'filename="Full.yaml"' in export.headers["content-disposition"]
    exported = yaml.safe_load(export.text)
    assert exported["name"] == "Full" and "id" not in exported

    # When that YAML, renamed, is posted back
    renamed = export.text.replace("name: Full", "name: Full-Copy", 1)
    answer = api.http.post("/api/pipelines", content=renamed, headers={"Content-Type": "application/yaml"})

    # Then the copy equals the original but for its identity
    assert answer.status_code == 201, answer.text
    copy = answer.json()
    assert copy["name"] == "Full-Copy" and copy["id"] != original["id"]
    assert without_identity(copy) == without_identity(original)


# -- triggering executions


def test_an_input_or_comments_of_the_wrong_type_is_refused_even_when_empty(api: ServedApp) -> None:
    # Given an enabled pipeline that needs no input
    created = enabled(api, pipeline_doc("No-Inputs"))

    # When it is triggered with an empty list for input, or false for comments
    a_list = trigger(api, created, {"input": []})
    a_flag = trigger(api, created, {"comments": False})
    nothing = trigger(api, created, {"input": None, "comments": None})

    # Then the wrong types are refused, and null stands for "none given"
    assert "'input' must be an object" in error_of(a_list, 400, "bad_request")["message"]
    assert "'comments' must be a string" in error_of(a_flag, 400, "bad_request")["message"]
    assert nothing.status_code == 202, nothing.text
    assert [row["index"] for row in listed(api, pipeline="No-Inputs")] == [1]


def test_a_disabled_pipeline_cannot_be_triggered(api: ServedApp) -> None:
    # Given a pipeline that was created disabled
    created = api.create(pipeline_doc("Off"))

    # When it is triggered
    answer = trigger(api, created)

    # Then it is refused with pipeline_disabled, and no execution exists
    error = error_of(answer, 409, "pipeline_disabled")
    assert "Off" in error["message"]
    assert listed(api, pipeline="Off") == []


def test_a_missing_mandatory_input_or_an_unknown_one_is_refused_by_name(api: ServedApp) -> None:
    # Given an enabled pipeline with a mandatory input and an optional one
    created = enabled(
        api,
        pipeline_doc(
            "Inputs",
            input={"version": "", "note": "none"},
            _inputMeta={"version": {"mandatory": True, "description": "the version to release"}},
        ),
    )

    # When it is triggered without the mandatory input, with an unknown one, or with input that is not an object
    missing = trigger(api, created, {"input": {"note": "hi"}})
    empty = trigger(api, created, {"input": {"version": ""}})
    unknown = trigger(api, created, {"input": {"version": "1.0", "colour": "blue"}})
    not_object = trigger(api, created, {"input": "version=1.0"})
    a_list = trigger(api, created, {"input": ["version", "1.0"]})
    bad_comments = trigger(api, created, {"input": {"version": "1.0"}, "comments": 7})
    unknown_field = trigger(api, created, {"inputs": {"version": "1.0"}})

    # Then each is refused, naming the input
    assert paths(error_of(missing, 400, "input_invalid")) == {"input.version"}
    assert paths(error_of(empty, 400, "input_invalid")) == {"input.version"}
    assert "the version to release" in error_of(missing, 400)["details"][0]["message"]
    unknown_error = error_of(unknown, 400, "input_invalid")
    assert paths(unknown_error) == {"input.colour"} and "colour" in unknown_error["details"][0]["message"]
    assert "'input' must be an object" in error_of(not_object, 400, "bad_request")["message"]
    assert "'input' must be an object" in error_of(a_list, 400, "bad_request")["message"]
    assert "comments" in error_of(bad_comments, 400, "bad_request")["message"]
    assert "inputs" in error_of(unknown_field, 400, "bad_request")["message"]
    # ... and none of them started an execution
    assert listed(api, pipeline="Inputs") == []


def test_a_trigger_answers_202_with_the_execution_and_its_location(api: ServedApp) -> None:
    # Given an enabled pipeline with a default input
    created = enabled(api, pipeline_doc("Go", input={"version": "0.1"}))

    # When it is triggered twice, the first time with comments and an input
    first = trigger(api, created, {"input": {"version": "1.0"}, "comments": "first try"})
    second = trigger(api, created)

    # Then each answer is a 202 naming the execution, numbered from 1, with its link in Location
    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    one, two = first.json(), second.json()
    assert (one["executionIndex"], two["executionIndex"]) == (1, 2)
    assert one["executionId"] != two["executionId"]
    assert one["executionLink"] == f"/api/executions/{one['executionId']}"
    assert first.headers["Location"].endswith(one["executionLink"])
    assert one["status"] == "RUNNING"

    # ... and the link shows the execution with its input, comments and who asked
    detail = api.http.get(one["executionLink"]).json()
    assert detail["id"] == one["executionId"] and detail["index"] == 1
    assert detail["pipeline"] == "Go" and detail["pipelineId"] == created["id"]
    assert detail["input"] == {"version": "1.0"} and detail["comments"] == "first try"
    assert api.http.get(two["executionLink"]).json()["input"] == {"version": "0.1"}
    assert detail["requestBy"] == "admin"


def test_a_running_execution_shows_its_first_task_queued_and_the_rest_not_started(api: ServedApp) -> None:
    # Given an enabled pipeline of two stages; the first runs two tasks in parallel, then one more
    document = pipeline_doc("Stages")
    document["stageOrder"] = ["Build", "Ship"]
    document["stages"] = {
        "Build": {
            "taskOrder": ["Lint,Unit", "Package"],
            "tasks": {"Lint": condition_task(), "Unit": condition_task(), "Package": condition_task()},
        },
        "Ship": {"taskOrder": ["Deploy"], "tasks": {"Deploy": condition_task()}},
    }
    created = enabled(api, document)

    # When it is triggered with no worker running
    started = triggered(api, created)
    detail = api.http.get(started["executionLink"]).json()

    # Then the execution is RUNNING, the parallel pair is QUEUED and everything after it waits
    assert detail["status"] == "RUNNING" and detail["finishedAt"] is None
    assert [stage["name"] for stage in detail["stages"]] == ["Build", "Ship"]
    build, ship = detail["stages"]
    assert build["status"] == "RUNNING"
    assert {task["name"]: task["status"] for task in build["tasks"]} == {
        "Lint": "QUEUED",
        "Unit": "QUEUED",
        "Package": "NOT_STARTED",
    }
    assert ship["status"] == "NOT_STARTED"
    assert [(task["name"], task["type"], task["status"]) for task in ship["tasks"]] == [
        ("Deploy", "Condition", "NOT_STARTED")
    ]


def test_an_unknown_execution_is_a_404(api: ServedApp) -> None:
    # Given no execution with this id
    # When it is read
    answer = api.http.get("/api/executions/00000000-0000-0000-0000-000000000000")

    # Then the answer is a 404 in the error shape
    assert "00000000" in error_of(answer, 404, "not_found")["message"]


def test_at_the_concurrency_limit_a_new_execution_waits_in_queued_saying_why(api: ServedApp) -> None:
    # Given a pipeline that runs one execution at a time, and no worker to finish it
    created = enabled(api, pipeline_doc("One-At-A-Time", concurrency=1))

    # When it is triggered twice
    first = triggered(api, created)
    second = triggered(api, created)

    # Then the second waits in QUEUED with a message naming the limit, and none of its tasks is queued
    assert first["status"] == "RUNNING"
    assert second["status"] == "QUEUED"
    waiting = api.http.get(second["executionLink"]).json()
    assert waiting["status"] == "QUEUED"
    assert "concurrency 1" in waiting["statusMessage"] and "queued behind 1" in waiting["statusMessage"]
    assert {task["status"] for stage in waiting["stages"] for task in stage["tasks"]} == {"NOT_STARTED"}
    assert listed(api, status="QUEUED")[0]["id"] == second["executionId"]


# -- listing executions


@pytest.fixture
def three_executions(api: ServedApp) -> dict[str, Any]:
    """Pipeline Solo (concurrency 1) triggered twice, so #1 RUNNING and #2 QUEUED; Other triggered once."""
    solo = enabled(api, pipeline_doc("Solo", concurrency=1))
    other = enabled(api, pipeline_doc("Other"))
    ids = [
        triggered(api, solo)["executionId"],
        triggered(api, solo)["executionId"],
        triggered(api, other)["executionId"],
    ]
    return {"solo": solo, "other": other, "ids": ids}


def test_executions_are_listed_newest_first_and_filtered_by_pipeline_name_or_id(
    api: ServedApp, three_executions: dict[str, Any]
) -> None:
    # Given three executions of two pipelines
    solo_1, solo_2, other_1 = three_executions["ids"]

    # When they are listed, all and by pipeline
    everything = listed(api)
    by_name = listed(api, pipeline="Solo")
    by_id = listed(api, pipeline=three_executions["other"]["id"])
    nobody = listed(api, pipeline="Nobody")

    # Then the newest comes first and each filter keeps its pipeline's executions
    assert [row["id"] for row in everything] == [other_1, solo_2, solo_1]
    assert [(row["pipeline"], row["index"]) for row in by_name] == [("Solo", 2), ("Solo", 1)]
    assert [row["id"] for row in by_id] == [other_1]
    assert nobody == []
    row = everything[0]
    assert {"id", "pipeline", "index", "status", "statusMessage", "comments", "rollback", "rollbackOf"} <= set(row)
    assert {"rollbackExecutionId", "input", "output", "createdAt", "finishedAt", "parentId", "relation"} <= set(row)
    assert (row["rollback"], row["rollbackOf"], row["rollbackExecutionId"]) == (False, None, None)
    assert (row["parentId"], row["relation"]) == (None, None)
    assert api.http.get(f"/api/executions/{other_1}").json()["children"] == []


def test_executions_are_filtered_by_one_or_several_statuses(api: ServedApp, three_executions: dict[str, Any]) -> None:
    # Given two RUNNING executions and a QUEUED one
    solo_1, solo_2, other_1 = three_executions["ids"]

    # When they are filtered by status
    running = listed(api, status="RUNNING")
    queued = listed(api, status="queued")
    both = listed(api, status="RUNNING, QUEUED")
    finished = listed(api, status="COMPLETED,FAILED")
    unknown = api.http.get("/api/executions", params={"status": "RUNNING,DONE"})

    # Then each status filter keeps just those, in any case and with spaces after commas
    assert [row["id"] for row in running] == [other_1, solo_1]
    assert [row["id"] for row in queued] == [solo_2]
    assert [row["id"] for row in both] == [other_1, solo_2, solo_1]
    assert finished == []
    # ... and an unknown status is refused naming it and the known ones
    message = error_of(unknown, 400, "bad_request")["message"]
    assert "DONE" in message and "ROLLBACK_COMPLETED" in message


def test_executions_are_filtered_by_rollback(api: ServedApp, three_executions: dict[str, Any]) -> None:
    # Given three executions, none of them a rollback
    # When they are filtered by the rollback flag
    rollbacks = listed(api, rollback="true")
    not_rollbacks = listed(api, rollback="false")
    maybe = api.http.get("/api/executions", params={"rollback": "maybe"})

    # Then true finds none, false finds all, and anything else is refused
    assert rollbacks == []
    assert len(not_rollbacks) == 3
    assert "maybe" in error_of(maybe, 400, "bad_request")["message"]


def test_executions_are_paged_with_limit_and_offset(api: ServedApp, three_executions: dict[str, Any]) -> None:
    # Given three executions
    solo_1, solo_2, other_1 = three_executions["ids"]

    # When they are read a page at a time
    first_page = listed(api, limit=2)
    second_page = listed(api, limit=2, offset=2)
    past_the_end = listed(api, offset=10)

    # Then the pages follow the newest-first order
    assert [row["id"] for row in first_page] == [other_1, solo_2]
    assert [row["id"] for row in second_page] == [solo_1]
    assert past_the_end == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": "1.5"},
        {"limit": "1001"},
        {"offset": "-3"},
        {"offset": "x"},
        {"limit": "²"},
        {"limit": "9" * 5000},
    ],
    ids=["negative", "word", "fraction", "over-max", "negative-offset", "word-offset", "superscript", "huge"],
)
def test_a_bad_limit_or_offset_is_refused(client: FlaskClient, params: dict[str, str]) -> None:
    # Given a limit or offset that is not a whole number in range
    (name,) = params

    # When executions are listed with it
    answer = client.get("/api/executions", query_string=params)

    # Then it is refused naming the parameter
    assert f"'{name}'" in error_of(answer, 400, "bad_request")["message"]


# -- authentication and routing


def api_routes(app: Flask) -> Iterator[tuple[str, str]]:
    """(method, path) of every `/api` route, with placeholder ids."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "some-id")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, path


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["none", "wrong", "basic-scheme", "no-scheme", "empty", "longer"],
)
def test_every_api_route_needs_the_token(api: ServedApp, headers: dict[str, str]) -> None:
    # Given a pipeline, and a client without the right token
    created = api.create(pipeline_doc("Guarded"))
    routes = list(api_routes(api.server.app))
    assert len(routes) >= 9, routes

    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as anonymous:
        # When each /api route is called
        for method, path in routes:
            answer = anonymous.request(method, path.replace("some-id", created["id"]), json={"enabled": True})

            # Then each answers 401 in the error shape, and nothing changed; the webhook (which takes no bearer
            # token) refuses for want of its signature
            error = error_of(answer, 401, "unauthorized")
            wanted = "X-Hub-Signature-256" if path == "/api/triggers/some-id" and method == "POST" else "Bearer"
            assert wanted in error["message"], (method, path)
    assert api.http.get(f"/api/pipelines/{created['id']}").json() == created


def test_the_right_token_opens_every_read_route(api: ServedApp) -> None:
    # Given a pipeline and the right token in any letter case of the scheme
    created = api.create(pipeline_doc("Open"))

    # When routes are called with it
    with httpx.Client(base_url=api.url, headers={"Authorization": f"bearer {TOKEN}"}, timeout=30) as client:
        answers = [
            client.get("/api/pipelines"),
            client.get(f"/api/pipelines/{created['id']}"),
            client.get(f"/api/pipelines/{created['id']}/export"),
            client.get("/api/executions"),
        ]

    # Then they answer
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]


def test_unknown_routes_and_wrong_methods_answer_json(api: ServedApp) -> None:
    # Given the API
    # When an unknown route, and a known route with a wrong method, are called
    unknown = api.http.get("/api/nothing-here")
    outside = api.http.get("/nothing-here")
    wrong_method = api.http.delete("/api/pipelines")
    wrong_method_on_item = api.http.post("/api/executions/some-id")

    # Then they answer 404 and 405 in the error shape
    error_of(unknown, 404, "not_found")
    error_of(outside, 404, "not_found")
    error_of(wrong_method, 405, "method_not_allowed")
    error_of(wrong_method_on_item, 405, "method_not_allowed")
    assert "GET" in wrong_method.headers.get("Allow", "")


def test_a_body_larger_than_the_limit_is_refused_in_the_error_shape(api: ServedApp) -> None:
    # Given a body of several megabytes
    body = b"x" * 3_000_000

    # When it is posted as a pipeline
    answer = api.http.post("/api/pipelines", content=body, headers={"Content-Type": "application/yaml"})

    # Then it is refused with 413 in the error shape
    error_of(answer, 413)


def test_a_json_body_nested_too_deeply_is_refused(api: ServedApp) -> None:
    # Given JSON nested far deeper than any document
    deep = b"[" * 100_000 + b"]" * 100_000
    created = api.create(pipeline_doc("Deep"))

    # When it is sent to each route that reads a body
    answers = [
        api.http.post("/api/pipelines", content=deep, headers={"Content-Type": "application/json"}),
        api.http.patch(f"/api/pipelines/{created['id']}", content=deep, headers={"Content-Type": "application/json"}),
        api.http.post(f"/api/pipelines/{created['id']}/executions", content=deep),
    ]

    # Then each is a 400, not a server error
    for answer in answers:
        error_of(answer, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/api/pipelines/a%00b",
        "/api/pipelines/a%00b/export",
        "/api/executions/a%00b",
        "/api/pipelines?name=a%00b",
        "/api/pipelines?project=a%00b",
        "/api/executions?pipeline=a%00b",
    ],
)
def test_a_nul_character_in_an_id_or_filter_is_not_a_server_error(client: FlaskClient, path: str) -> None:
    # Given an id or filter holding a NUL character, which PostgreSQL text cannot hold
    # When it is used
    answer = client.get(path)

    # Then the answer is a client error in the error shape (no such object, or a bad request)
    assert answer.status_code in (400, 404), answer.get_data(as_text=True)
    error_of(answer, answer.status_code)


def test_values_postgresql_cannot_store_are_refused_not_a_server_error(api: ServedApp) -> None:
    # Given a pipeline, and values that PostgreSQL cannot store: NUL characters, and a name past its column
    created = enabled(api, pipeline_doc("Stored", input={"note": ""}))

    # When they are sent in a document, a patch, and a trigger
    answers = [
        api.http.post("/api/pipelines", json=pipeline_doc("nul\x00name")),
        api.http.post("/api/pipelines", json=pipeline_doc("n" * 300)),
        api.http.post("/api/pipelines", json=pipeline_doc("Nul-Description", description="a\x00b")),
        api.http.patch(f"/api/pipelines/{created['id']}", json={"description": "a\x00b"}),
        trigger(api, created, {"input": {"note": "a\x00b"}}),
        trigger(api, created, {"comments": "a\x00b"}),
    ]

    # Then each is a 4xx in the error shape
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        error_of(answer, answer.status_code)


def test_a_trigger_input_that_is_not_json_is_refused(api: ServedApp) -> None:
    # Given an enabled pipeline with an input
    created = enabled(api, pipeline_doc("Numbers", input={"ratio": 1}))

    # When it is triggered with NaN, which Python's JSON encoder writes but JSON does not allow
    answer = api.http.post(
        f"/api/pipelines/{created['id']}/executions",
        content=b'{"input": {"ratio": NaN}}',
        headers={"Content-Type": "application/json"},
    )

    # Then it is refused, and no execution was recorded
    error_of(answer, 400)
    assert listed(api, pipeline="Numbers") == []


# -- fuzz: whatever arrives, the answer is never a 500, and a 4xx is always in the error shape


def assert_answer_is_sound(answer: Any) -> None:
    assert answer.status_code < 500, answer.get_data(as_text=True)
    if 400 <= answer.status_code < 500:
        assert answer.is_json, answer.get_data(as_text=True)
        assert_error_shape(answer.get_json())


KEYS = [
    "kind",
    "name",
    "project",
    "enabled",
    "concurrency",
    "description",
    "input",
    "_inputMeta",
    "output",
    "stageOrder",
    "stages",
    "tags",
    "comments",
    "id",
]
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), json_values, max_size=6)
yamlish = st.text(alphabet=string.printable + "{}[]:-!&*|>#'\"\u00e9\u0000", max_size=120)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "object", "yaml"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "yaml":
        return draw(yamlish).encode("utf-8", errors="surrogatepass")
    value = draw(json_objects if kind == "object" else json_values)
    return json.dumps(value).encode()


content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json; charset=latin-1",
    ]
) | st.text(alphabet=string.ascii_letters + "/;=+-. ", max_size=30)


@pytest.fixture
def target(client: FlaskClient) -> Doc:
    """An enabled pipeline with an input, for the fuzz stories to aim at."""
    answer = client.post("/api/pipelines", json=pipeline_doc("Target", enabled=True, input={"version": "1"}))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    created: Doc = answer.get_json()
    return created


@FUZZ
@given(
    method_path=st.sampled_from(
        [("POST", "/api/pipelines"), ("PUT", "{p}"), ("PATCH", "{p}"), ("POST", "{p}/executions")]
    ),
    unknown_id=st.booleans(),
    body=bodies(),
    content_type=content_types,
)
def test_fuzz_random_bodies_never_make_a_server_error(
    client: FlaskClient, target: Doc, method_path: tuple[str, str], unknown_id: bool, body: bytes, content_type: str
) -> None:
    # Given any body, with any content type, for a route that reads one
    method, template = method_path
    pipeline = "/api/pipelines/" + ("no-such-id" if unknown_id else target["id"])
    path = template.format(p=pipeline)

    # When it is sent
    answer = client.open(path, method=method, data=body, content_type=content_type)

    # Then the answer is not a server error, and an error is in the error shape
    assert_answer_is_sound(answer)


segments = st.text(min_size=1, max_size=30)
query_values = st.text(max_size=30) | st.sampled_from(["true", "false", "RUNNING,QUEUED", "0", "-1", "1e3", " "])
query_keys = st.sampled_from(["pipeline", "status", "rollback", "limit", "offset", "project", "name"]) | st.text(
    max_size=10
)


@FUZZ
@given(
    template=st.sampled_from(
        [
            "/api/pipelines",
            "/api/pipelines/{s}",
            "/api/pipelines/{s}/export",
            "/api/executions",
            "/api/executions/{s}",
            "/api/{s}",
            "/api/pipelines/{id}",
            "/api/pipelines/{id}/export",
        ]
    ),
    segment=segments,
    query=st.dictionaries(query_keys, query_values, max_size=4),
)
def test_fuzz_random_paths_and_queries_never_make_a_server_error(
    client: FlaskClient, target: Doc, template: str, segment: str, query: dict[str, str]
) -> None:
    # Given any path segment and any query string on a GET route
    path = template.format(s=quote(segment, safe=""), id=target["id"])

    # When it is read
    answer = client.get(path, query_string=query)

    # Then the answer is not a server error, and an error is in the error shape
    assert_answer_is_sound(answer)


NAMES = st.sampled_from(["Build", "Deploy", "Verify Health", "A,B", "x.y", " Lead", "", "${x}"]) | st.text(max_size=8)
BINDINGS = st.sampled_from(
    [
        "${input.version}",
        "${input.missing}",
        "${Build.Check.output.result}",
        "${Deploy.Go.output.responseJson.items[0].ready}",
        "${executionId}",
        "${var.region}",
        "${unterminated",
        "${}",
        "${input.}",
        "v${executionIndex}",
    ]
)
EXPRESSIONS = BINDINGS | st.sampled_from(
    ["1 == 1", "${input.version} != ''", "not (1 < 2) and true", "((", "== ==", "'a' >= 'b' or false", ""]
)
ODD_VALUES = (
    NAMES
    | EXPRESSIONS
    | st.sampled_from(["REST", "POLL", "Condition", "K8S", "Bogus", "PIPELINE", "http://e.com", "ftp://x", "TELEPORT"])
    | st.sampled_from(["url", "action", "condition", "exitCriteria", "pollCount", "taskOrder", "tasks", "rollback"])
    | json_values
)

GOOD_STAGES = ["Build", "Deploy", "Verify Health"]
GOOD_TASKS = ["Check", "Go", "Call Api", "Wait Ready"]
good_conditions = st.sampled_from(["1 == 1", "${input.version} != ''", "not false", "${executionIndex} > 0"])
good_urls = st.sampled_from(["http://example.com/x", "https://e.com/${input.version}", "http://127.0.0.1:1/"])
good_tasks = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("Condition"), "input": st.fixed_dictionaries({"condition": good_conditions})}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("REST"),
            "input": st.fixed_dictionaries(
                {"url": good_urls},
                optional={"action": st.sampled_from(["get", "post", "PUT"]), "payload": json_values},
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("POLL"),
            "input": st.fixed_dictionaries(
                {"url": good_urls, "exitCriteria": st.just({"success": "${responseJson.ok} == true"})},
                optional={"pollCount": st.integers(1, 5), "pollIntervalSeconds": st.floats(0.1, 5)},
            ),
        }
    ),
)


@st.composite
def good_stage(draw: st.DrawFn) -> Doc:
    names = draw(st.lists(st.sampled_from(GOOD_TASKS), min_size=1, max_size=3, unique=True))
    tasks: Doc = {}
    for name in names:
        task = draw(good_tasks)
        if draw(st.booleans()):
            task["ignoreFailure"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            task["preCondition"] = draw(good_conditions)
        tasks[name] = task
    order = [",".join(names[:2]), *names[2:]] if len(names) > 1 and draw(st.booleans()) else list(names)
    stage: Doc = {"taskOrder": order, "tasks": tasks}
    if draw(st.integers(0, 3)) == 0:
        stage["rollback"] = {"pipeline": "Target", "input": {"version": "${input.version}"}}
    return stage


@st.composite
def good_documents(draw: st.DrawFn) -> Doc:
    """A valid pipeline: some of Rollway's stages, task types, bindings, parallel groups and links."""
    stage_names = draw(st.lists(st.sampled_from(GOOD_STAGES), min_size=1, max_size=3, unique=True))
    name = draw(st.text(alphabet=string.ascii_letters + string.digits + "-_ ", min_size=1, max_size=20))
    return {
        "kind": "PIPELINE",
        "name": name.strip() or "Fuzzed",
        "project": "api",
        "enabled": draw(st.booleans()),
        "concurrency": draw(st.integers(1, 1000)),
        "input": {"version": ""},
        "_inputMeta": {"version": {"mandatory": draw(st.booleans()), "description": "v"}},
        "stageOrder": stage_names,
        "stages": {stage: draw(good_stage()) for stage in stage_names},
    }


def containers(value: object) -> list[dict[str, Any] | list[Any]]:
    """Every dict and list inside a value, the value itself first."""
    found: list[dict[str, Any] | list[Any]] = []
    if isinstance(value, dict | list):
        found.append(value)
        for item in value.values() if isinstance(value, dict) else value:
            found += containers(item)
    return found


@st.composite
def mutate(draw: st.DrawFn, document: Doc) -> Doc:
    """A copy of the document with one change: a value replaced, a key removed, renamed or added."""
    # Copies, so that no drawn value (a `just` is one shared object) is changed under Hypothesis' feet.
    document = copy.deepcopy(document)
    target = draw(st.sampled_from(containers(document)))
    operation = draw(st.sampled_from(["replace", "remove", "rename", "add"]))
    if isinstance(target, list):
        if target and operation != "add":
            target[draw(st.integers(0, len(target) - 1))] = copy.deepcopy(draw(ODD_VALUES))
        else:
            target.append(copy.deepcopy(draw(ODD_VALUES)))
        return document
    keys = sorted(target)
    if not keys or operation == "add":
        target[draw(NAMES | st.sampled_from(KEYS))] = copy.deepcopy(draw(ODD_VALUES))
        return document
    key = draw(st.sampled_from(keys))
    if operation == "replace":
        target[key] = copy.deepcopy(draw(ODD_VALUES))
    elif operation == "remove":
        del target[key]
    else:
        target[draw(NAMES)] = target.pop(key)
    return document


@st.composite
def documents(draw: st.DrawFn) -> Doc:
    """A pipeline document that is valid, or nearly: a valid one with up to three random changes."""
    document = draw(good_documents())
    for _ in range(draw(st.integers(0, 3))):
        document = draw(mutate(document))
    return document


@FUZZ
@given(document=documents(), as_yaml=st.booleans())
def test_fuzz_documents_that_look_like_pipelines_are_created_or_refused_never_a_server_error(
    client: FlaskClient, target: Doc, document: Doc, as_yaml: bool
) -> None:
    # Given a document shaped mostly like a pipeline, with random names, task types, inputs and links
    if as_yaml:
        body, content_type = yaml.safe_dump(document, allow_unicode=True), "application/yaml"
    else:
        body, content_type = json.dumps(document), "application/json"

    # When it is posted
    answer = client.post("/api/pipelines", data=body, content_type=content_type)

    # Then it is created, refused as invalid, or refused as a duplicate name; never a server error
    assert_answer_is_sound(answer)
    assert answer.status_code in (201, 400, 409), answer.get_data(as_text=True)
    event(f"answer {answer.status_code}")
    if answer.status_code == 201:
        # ... and what was created reads back, and exports to YAML that reads back the same
        created = answer.get_json()
        exported = client.get(f"/api/pipelines/{created['id']}/export")
        assert exported.status_code == 200
        assert yaml.safe_load(exported.get_data(as_text=True))["name"] == created["name"]
        assert client.delete(f"/api/pipelines/{created['id']}").status_code == 204


def test_an_unknown_api_route_without_a_token_is_refused_before_it_is_looked_up(api: ServedApp) -> None:
    # When a route that does not exist is called without a token
    with httpx.Client(base_url=api.url, timeout=30) as anonymous:
        answer = anonymous.get("/api/secret-admin-route")

    # Then the answer does not tell whether it exists
    error_of(answer, 401, "unauthorized")


def test_patch_refuses_null_rather_than_reading_it_as_a_default(api: ServedApp) -> None:
    # Given an enabled pipeline
    created = api.create(pipeline_doc("Nulls", enabled=True))

    # When it is patched with null for a flag
    answer = api.http.patch(f"/api/pipelines/{created['id']}", json={"enabled": None})

    # Then that is refused, naming the field, and the pipeline stays enabled
    assert "enabled" in error_of(answer, 400, "bad_request")["message"]
    assert api.http.get(f"/api/pipelines/{created['id']}").json()["enabled"] is True


def test_an_execution_is_canceled_once_and_then_refused_with_409(api: ServedApp) -> None:
    # Given a running execution (no worker: its first task stays queued)
    started = triggered(api, enabled(api, pipeline_doc("Cancelable")))
    path = f"/api/executions/{started['executionId']}/cancel"

    # When it is canceled, and canceled again
    first = api.http.post(path)
    second = api.http.post(path)

    # Then the first answers 202 with the CANCELED execution, the second 409 naming the statuses
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "CANCELED" and first.json()["statusMessage"] == "canceled by admin"
    assert "CANCELED to CANCELED" in error_of(second, 409, "invalid_transition")["message"]
    tasks = api.http.get(f"/api/executions/{started['executionId']}").json()["stages"][0]["tasks"]
    assert [task["status"] for task in tasks] == ["CANCELED", "NOT_STARTED"]
    error_of(api.http.post("/api/executions/no-such-execution/cancel"), 404, "not_found")


# -- apply a batch


def test_apply_of_a_batch_answers_each_outcome_in_the_order_applied(api: ServedApp) -> None:
    # Given a saved pipeline, and a batch of it unchanged, a release naming a rollback of the batch, and that rollback
    saved = api.create(pipeline_doc("Saved"))
    release = pipeline_doc("Release")
    release["stages"]["Check"]["rollback"] = {"pipeline": "Undo"}
    documents = [pipeline_doc("Saved"), release, pipeline_doc("Undo")]

    # When it is applied as a dry run, then for real
    dry = api.http.post("/api/pipelines/apply", json={"documents": documents, "dryRun": True})
    real = api.http.post("/api/pipelines/apply", json={"documents": documents})

    # Then both answer each document's outcome, the rollback before the release; only the real one saved them
    assert dry.status_code == 200, dry.text
    outcomes = [(item["name"], item["action"], item["document"]) for item in dry.json()["pipelines"]]
    assert outcomes == [("Saved", "unchanged", 0), ("Undo", "created", 2), ("Release", "created", 1)]
    assert dry.json()["dryRun"] is True and [item["id"] for item in dry.json()["pipelines"]][1:] == [None, None]
    assert real.status_code == 200, real.text
    answered = real.json()["pipelines"]
    assert [(item["name"], item["action"]) for item in answered] == [(name, action) for name, action, _ in outcomes]
    assert answered[0]["id"] == saved["id"]
    listed = {item["name"]: item["id"] for item in api.http.get("/api/pipelines", params={"project": "api"}).json()}
    assert listed == {"Saved": saved["id"], "Undo": answered[1]["id"], "Release": answered[2]["id"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'documents' must be a non-empty list"),
        ({"documents": []}, "'documents' must be a non-empty list"),
        ({"documents": {"name": "x"}}, "'documents' must be a non-empty list"),
        ({"documents": [{"name": "x"}], "dryRun": "yes"}, "'dryRun' must be true or false"),
        ({"documents": ["text"]}, "the pipeline has 1 problem"),
        ({"documents": [], "extra": 1}, "unknown field(s) extra"),
    ],
)
def test_apply_refuses_a_body_that_is_not_a_batch(api: ServedApp, body: Doc, message: str) -> None:
    # When a body that is not a batch of documents is applied
    answer = api.http.post("/api/pipelines/apply", json=body)

    # Then it is a 400 saying what is wrong, and nothing is saved
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]
    assert api.http.get("/api/pipelines").json() == []
