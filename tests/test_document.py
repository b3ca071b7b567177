"""Stories about reading pipeline documents: Code Stream's export shape in, a validated Pipeline out.

Every problem a document has is reported at once, each with the path an author can find it at.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import decoding, document, expressions
from orchestrator.decoding import parse_text
from orchestrator.document import RollbackTarget, load_pipeline, to_document
from orchestrator.errors import BadRequest, ExpressionError, PipelineInvalid, Problem
from orchestrator.pipeline import InputMeta, RollbackLink
from orchestrator.tasktypes import TASK_TYPES

Document = dict[str, Any]
Mutation = Callable[[Document], None]

DEV = ("stages", "Development")
DEV_TASKS = (*DEV, "tasks")
BUILD = (*DEV_TASKS, "Start Build")
WAIT = (*DEV_TASKS, "Wait For Build")
CHECK = (*DEV_TASKS, "Check Tag")
GATE = (*DEV_TASKS, "Gate")
RELEASE = ("stages", "Production", "tasks", "Release")


def code_stream_document() -> Document:
    """A pipeline as Code Stream exports it: two stages, a parallel group, REST, POLL and Condition tasks."""
    return {
        "kind": "PIPELINE",
        "name": "RollingUpgrade-Example",
        "project": "demo",
        "description": "Build, check and release",
        "concurrency": 3,
        "tags": ["web"],
        "input": {"image": "", "tag": "latest"},
        "_inputMeta": {"image": {"mandatory": True, "description": "image repository"}},
        "output": {"buildUrl": "${Development.Start Build.output.responseJson.url}"},
        "stageOrder": ["Development", "Production"],
        "stages": {
            "Development": {
                "rollback": {
                    "pipeline": "Dev Rollback",
                    "input": {"previousImage": "${Development.Start Build.output.responseJson.previous}"},
                },
                "taskOrder": ["Start Build", "Wait For Build,Check Tag", "Gate"],
                "tasks": {
                    "Start Build": {
                        "type": "REST",
                        "input": {
                            "action": "post",
                            "url": "https://ci.example.com/builds",
                            "headers": {"Accept": "application/json"},
                            "payload": {"image": "${input.image}", "tag": "${input.tag}"},
                        },
                    },
                    "Wait For Build": {
                        "type": "POLL",
                        "input": {
                            "url": "https://ci.example.com/builds/${Development.Start Build.output.responseJson.id}",
                            "pollCount": 10,
                            "pollIntervalSeconds": 5,
                            "exitCriteria": {
                                "success": "responseJson.status == 'done'",
                                "failure": "responseCode >= 500",
                            },
                        },
                    },
                    "Check Tag": {
                        "type": "Condition",
                        "input": {"condition": "${input.tag} != 'latest'"},
                        "ignoreFailure": True,
                    },
                    "Gate": {
                        "type": "Condition",
                        "input": {"condition": "${Development.Wait For Build.output.responseCode} == 200"},
                        "preCondition": "${input.image} != ''",
                        "rollback": {"pipeline": "Gate Rollback", "input": {"reason": "gate failed on ${input.tag}"}},
                    },
                },
            },
            "Production": {
                "taskOrder": ["Release"],
                "tasks": {
                    "Release": {
                        "type": "REST",
                        "input": {
                            "action": "put",
                            "url": "https://deploy.example.com/${input.image}",
                            "payload": "${Development.Start Build.output.responseJson}",
                        },
                    },
                },
            },
        },
    }


ROLLBACKS = {
    "Dev Rollback": RollbackTarget("Dev Rollback", frozenset({"previousImage"}), frozenset({"previousImage"})),
    "Gate Rollback": RollbackTarget("Gate Rollback", frozenset({"reason"}), frozenset()),
}


def targets(project: str, name: str) -> RollbackTarget | None:
    """The rollback pipelines that exist, all in project 'demo'."""
    return ROLLBACKS.get(name) if project == "demo" else None


def set_at(path: tuple[str | int, ...], value: object) -> Mutation:
    """A change to a document: put `value` at `path`."""

    def mutate(doc: Document) -> None:
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = copy.deepcopy(value)

    return mutate


def drop_at(path: tuple[str | int, ...]) -> Mutation:
    """A change to a document: remove what is at `path`."""

    def mutate(doc: Document) -> None:
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]

    return mutate


def rename_task(old: str, new: str, order: list[str]) -> Mutation:
    """A change to a document: rename a Development task and list the stage's tasks as `order`."""

    def mutate(doc: Document) -> None:
        tasks = doc["stages"]["Development"]["tasks"]
        tasks[new] = tasks.pop(old)
        doc["stages"]["Development"]["taskOrder"] = order

    return mutate


def problems_of(doc: object, lookup: document.TargetLookup | None = targets) -> list[Problem]:
    """The problems load_pipeline reports for a document (failing the test if it loads)."""
    with pytest.raises(PipelineInvalid) as raised:
        load_pipeline(doc, lookup, variables=lambda _project, _name: False)
    return raised.value.details


def assert_problems(found: list[Problem], expected: list[tuple[str, str]]) -> None:
    """Exactly the expected problems: each path equal, each message containing the expected text."""
    unmatched = list(found)
    for path, text in expected:
        match = next((p for p in unmatched if p.path == path and text in p.message), None)
        assert match is not None, f"no problem at {path!r} saying {text!r} in {found}"
        unmatched.remove(match)
    assert not unmatched, f"unexpected problems: {unmatched}"


# -- a valid document


def test_a_code_stream_document_loads_into_the_pipeline_model() -> None:
    # Given a document in Code Stream's export shape
    doc = code_stream_document()
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then stages keep their order and a comma-separated taskOrder entry is one parallel group
    assert pipeline.name == "RollingUpgrade-Example"
    assert pipeline.project == "demo"
    assert pipeline.stage_order == ("Development", "Production")
    assert pipeline.stages["Development"].groups == (("Start Build",), ("Wait For Build", "Check Tag"), ("Gate",))
    assert pipeline.stages["Production"].groups == (("Release",),)
    # And each task keeps its type, input, preCondition, ignoreFailure and rollback link
    gate = pipeline.task(("Development", "Gate"))
    assert gate.type == "Condition"
    assert gate.pre_condition == "${input.image} != ''"
    assert gate.rollback == RollbackLink("Gate Rollback", {"reason": "gate failed on ${input.tag}"})
    assert pipeline.task(("Development", "Check Tag")).ignore_failure is True
    assert pipeline.task(("Development", "Start Build")).ignore_failure is False
    assert pipeline.task(("Development", "Wait For Build")).input["exitCriteria"] == {
        "success": "responseJson.status == 'done'",
        "failure": "responseCode >= 500",
    }
    # And the stage's rollback link, inputs, their metadata and the outputs are all there
    assert pipeline.stages["Development"].rollback == RollbackLink(
        "Dev Rollback", {"previousImage": "${Development.Start Build.output.responseJson.previous}"}
    )
    assert pipeline.stages["Production"].rollback is None
    assert pipeline.input == {"image": "", "tag": "latest"}
    assert pipeline.input_meta == {"image": InputMeta(mandatory=True, description="image repository")}
    assert pipeline.mandatory_inputs() == ["image"]
    assert pipeline.output == {"buildUrl": "${Development.Start Build.output.responseJson.url}"}
    assert (pipeline.description, pipeline.concurrency, pipeline.tags) == ("Build, check and release", 3, ("web",))


def test_a_document_that_leaves_out_the_optional_fields_gets_the_defaults() -> None:
    # Given a document with only a name, a stage and a task
    doc = {
        "name": "smallest",
        "stageOrder": ["Only"],
        "stages": {"Only": {"taskOrder": ["Ping"], "tasks": {"Ping": {"type": "REST", "input": {"url": "http://a"}}}}},
    }
    # When it is loaded, with and without a project default of the caller's choosing
    pipeline = load_pipeline(doc, targets)
    in_team = load_pipeline(doc, targets, default_project="team-a")
    # Then it is disabled, runs 10 at a time, and lands in the default project
    assert (pipeline.enabled, pipeline.concurrency, pipeline.project) == (False, 10, "default")
    assert in_team.project == "team-a"
    # And the task neither ignores failures nor has a preCondition, and the pipeline has no inputs
    ping = pipeline.task(("Only", "Ping"))
    assert (ping.ignore_failure, ping.pre_condition, ping.rollback) == (False, None, None)
    assert (pipeline.input, pipeline.input_meta, pipeline.output) == ({}, {}, {})


def test_a_project_in_the_document_wins_over_the_default_project() -> None:
    # Given a document naming its project
    doc = code_stream_document()
    # When it is loaded by a caller whose default project is another
    pipeline = load_pipeline(doc, targets, default_project="elsewhere")
    # Then the document's project is kept
    assert pipeline.project == "demo"


def test_spaces_around_the_commas_of_a_parallel_group_are_ignored() -> None:
    # Given a taskOrder entry written with spaces after the comma
    doc = code_stream_document()
    doc["stages"]["Development"]["taskOrder"][1] = "Wait For Build , Check Tag"
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then the group holds both tasks by their real names
    assert pipeline.stages["Development"].groups[1] == ("Wait For Build", "Check Tag")


def test_fields_of_a_code_stream_export_that_rollway_does_not_use_are_tolerated() -> None:
    # Given a document exported from Code Stream with its bookkeeping fields
    doc = code_stream_document() | {
        "id": "c3a1e8d2",
        "workspace": {"image": "fedora:latest", "endpoint": "docker-host"},
        "notifications": {"email": []},
        "options": [],
        "starred": {},
        "icon": "organization,left, is-info",
        "_warnings": [],
    }
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then it reads as the same pipeline as without them, its workspace kept (to export it again)
    assert dataclasses.replace(pipeline, workspace={}) == load_pipeline(code_stream_document(), targets)
    assert to_document(pipeline)["workspace"] == {"image": "fedora:latest", "endpoint": "docker-host"}


def test_an_enabled_document_is_read_as_enabled() -> None:
    # Given a document that asks to be enabled
    doc = code_stream_document() | {"enabled": True}
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then it is enabled
    assert pipeline.enabled is True


@pytest.mark.parametrize("concurrency", [1, 1000])
def test_concurrency_may_be_anything_from_1_to_1000(concurrency: int) -> None:
    # Given a document at either end of the concurrency range
    doc = code_stream_document() | {"concurrency": concurrency}
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then the concurrency is kept
    assert pipeline.concurrency == concurrency


def test_without_a_target_lookup_rollback_links_are_not_looked_up() -> None:
    # Given a document whose rollback pipelines are not known to the lookup
    doc = code_stream_document()
    # When it is loaded without a lookup (as the store does for documents it already accepted)
    pipeline = load_pipeline(doc, None)
    # Then it loads, links and all
    assert pipeline.stages["Development"].rollback is not None
    # While with a lookup that knows of no pipeline, both links are refused
    assert_problems(
        problems_of(doc, lambda _project, _name: None),
        [
            ("stages.Development.rollback.pipeline", "rollback pipeline 'Dev Rollback' does not exist in project"),
            ("stages.Development.tasks.Gate.rollback.pipeline", "'Gate Rollback' does not exist in project 'demo'"),
        ],
    )


def test_rollback_pipelines_are_looked_up_in_the_pipelines_own_project() -> None:
    # Given a lookup that records what it was asked
    asked: list[tuple[str, str]] = []

    def recording(project: str, name: str) -> RollbackTarget | None:
        asked.append((project, name))
        return targets(project, name)

    # When a document of project 'demo' is loaded
    load_pipeline(code_stream_document(), recording)
    # Then both rollback pipelines were looked up in 'demo'
    assert sorted(asked) == [("demo", "Dev Rollback"), ("demo", "Gate Rollback")]


# -- round trips


def test_a_pipeline_written_out_reads_back_as_the_same_pipeline() -> None:
    # Given a loaded pipeline
    pipeline = load_pipeline(code_stream_document() | {"enabled": True}, targets)
    # When it is written out as a document and read back
    again = load_pipeline(to_document(pipeline), targets)
    # Then nothing was lost or changed
    assert again == pipeline


def test_a_pipeline_exported_as_yaml_or_json_text_reads_back_the_same() -> None:
    # Given a loaded pipeline
    pipeline = load_pipeline(code_stream_document(), targets)
    exported = to_document(pipeline)
    # When it is exported as YAML text and as JSON text and read back through parse_text
    from_yaml = load_pipeline(parse_text(yaml.safe_dump(exported, sort_keys=False), "application/yaml"), targets)
    from_json = load_pipeline(parse_text(json.dumps(exported).encode(), "application/json"), targets)
    # Then both are the same pipeline
    assert from_yaml == pipeline
    assert from_json == pipeline


def test_the_export_keeps_the_code_stream_shape() -> None:
    # Given a loaded pipeline
    pipeline = load_pipeline(code_stream_document(), targets)
    # When it is written out
    exported = to_document(pipeline)
    # Then it has Code Stream's field names, groups joined by commas and links on stage and task
    assert exported["kind"] == "PIPELINE"
    assert exported["stageOrder"] == ["Development", "Production"]
    assert exported["_inputMeta"] == {"image": {"mandatory": True, "description": "image repository"}}
    development = exported["stages"]["Development"]
    assert development["taskOrder"] == ["Start Build", "Wait For Build,Check Tag", "Gate"]
    assert development["rollback"]["pipeline"] == "Dev Rollback"
    assert development["tasks"]["Gate"]["preCondition"] == "${input.image} != ''"
    assert development["tasks"]["Gate"]["rollback"]["pipeline"] == "Gate Rollback"
    assert development["tasks"]["Check Tag"]["ignoreFailure"] is True


# -- problems: each reported where it is, all at once


def test_a_document_that_is_not_an_object_is_refused_as_a_whole() -> None:
    for doc in (None, [code_stream_document()], "name: x", 42):
        # Given a document that is not a mapping
        # When it is loaded
        found = problems_of(doc)
        # Then one problem, for the document itself, says what it should be
        assert found == [Problem("", "the document must be an object (a YAML mapping or JSON object)")]


def test_the_error_counts_the_problems_and_answers_400() -> None:
    # Given a document with two problems
    doc = code_stream_document() | {"concurrency": 0, "colour": "blue"}
    # When it is loaded
    with pytest.raises(PipelineInvalid) as raised:
        load_pipeline(doc, targets)
    # Then the error is a bad request that counts them and lists them as path and message
    error = raised.value
    assert (error.http_status, error.code, error.message) == (400, "pipeline_invalid", "the pipeline has 2 problems")
    assert [problem.as_dict()["path"] for problem in error.details] == ["colour", "concurrency"]


def test_an_unknown_top_level_field_is_reported_with_the_fields_that_are_known() -> None:
    # Given a document with a misspelt field
    doc = code_stream_document() | {"stageOrdre": ["Development"]}
    # When it is loaded
    found = problems_of(doc)
    # Then the field is reported, with the names the author may have meant
    assert len(found) == 1
    assert found[0].path == "stageOrdre"
    assert found[0].message.startswith("is not a known field (expected one of: ")
    assert "stageOrder" in found[0].message and "_inputMeta" in found[0].message


def test_an_unknown_task_type_is_reported_with_every_valid_type() -> None:
    # Given a task of a type Rollway does not have
    doc = code_stream_document()
    set_at((*GATE, "type"), "Telnet")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the message names the type and lists every valid one
    assert [problem.path for problem in found] == ["stages.Development.tasks.Gate.type"]
    assert "unknown task type 'Telnet'" in found[0].message
    assert all(name in found[0].message for name in TASK_TYPES)


PROBLEMS = [
    pytest.param(drop_at(("name",)), [("name", "is required")], id="missing-name"),
    pytest.param(set_at(("name",), "  "), [("name", "must be a non-empty string")], id="blank-name"),
    pytest.param(set_at(("kind",), "TEMPLATE"), [("kind", "must be PIPELINE, not 'TEMPLATE'")], id="kind"),
    pytest.param(set_at(("enabled",), "maybe"), [("enabled", "must be true or false, not 'maybe'")], id="enabled"),
    pytest.param(set_at(("concurrency",), 0), [("concurrency", "from 1 to 1000, not 0")], id="concurrency-0"),
    pytest.param(set_at(("concurrency",), 1001), [("concurrency", "from 1 to 1000, not 1001")], id="concurrency-1001"),
    pytest.param(set_at(("concurrency",), "five"), [("concurrency", "whole number")], id="concurrency-text"),
    pytest.param(set_at(("concurrency",), True), [("concurrency", "not True")], id="concurrency-bool"),
    pytest.param(set_at(("tags",), True), [("tags", "must be a list of strings")], id="tags-not-a-list"),
    pytest.param(set_at(("tags",), ["web", {"team": "a"}]), [("tags", "must be a list of strings")], id="tags-dict"),
    pytest.param(
        set_at(("stages",), ["Development", "Production"]),
        [
            ("stages", "must be an object with string keys"),
            ("stageOrder[0]", "names stage 'Development', which is not in 'stages'"),
            ("stageOrder[1]", "names stage 'Production', which is not in 'stages'"),
        ],
        id="stages-not-an-object",
    ),
    pytest.param(
        set_at((*GATE, "type"), ["Condition"]),
        [("stages.Development.tasks.Gate.type", "unknown task type ['Condition']")],
        id="type-not-a-name",
    ),
    pytest.param(
        set_at((*RELEASE, "input", "url"), None),
        [("stages.Production.tasks.Release.input.url", "is required")],
        id="rest-url-null",
    ),
    pytest.param(
        set_at((*WAIT, "input", "exitCriteria", 1), "responseCode == 200"),
        [("stages.Development.tasks.Wait For Build.input.exitCriteria.1", "is not 'success' or 'failure'")],
        id="poll-exit-number-key",
    ),
    pytest.param(
        set_at((*CHECK, "input", "condition"), None),
        [("stages.Development.tasks.Check Tag.input.condition", "is required")],
        id="condition-null",
    ),
    pytest.param(
        set_at(("input", "tag"), ["v1"]),
        [("input.tag", "a default input value must be a string, number or boolean")],
        id="input-default-list",
    ),
    pytest.param(
        set_at(("_inputMeta", "region"), {"mandatory": True}),
        [("_inputMeta.region", "describes input 'region', which is not in 'input'")],
        id="input-meta-undeclared",
    ),
    pytest.param(
        set_at(("_inputMeta", "image", "required"), True),
        [("_inputMeta.image.required", "is not a known field (expected one of: description, mandatory)")],
        id="input-meta-field",
    ),
    pytest.param(
        set_at(("_inputMeta", "image", "mandatory"), "maybe"),
        [("_inputMeta.image.mandatory", "must be true or false")],
        id="input-meta-mandatory",
    ),
    pytest.param(
        set_at(("stageOrder",), ["Development", "Production", "QA"]),
        [("stageOrder[2]", "names stage 'QA', which is not in 'stages'")],
        id="stage-order-unknown",
    ),
    pytest.param(
        set_at(("stageOrder",), ["Development", "Production", "Development"]),
        [("stageOrder[2]", "lists stage 'Development' twice")],
        id="stage-order-twice",
    ),
    pytest.param(
        set_at(("stageOrder",), ["Development"]),
        [("stages.Production", "is not listed in 'stageOrder'")],
        id="stage-not-ordered",
    ),
    pytest.param(
        set_at(("stageOrder",), []), [("stageOrder", "must be a non-empty list of stage names")], id="stage-order-empty"
    ),
    pytest.param(
        set_at(("stages", "Production", "owner"), "ops"),
        [("stages.Production.owner", "is not a known field")],
        id="stage-field",
    ),
    pytest.param(
        set_at(("stages", "Production"), {"taskOrder": [], "tasks": {}}),
        [("stages.Production.tasks", "a stage needs at least one task")],
        id="stage-without-tasks",
    ),
    pytest.param(
        set_at((*DEV, "taskOrder"), ["Start Build", "Wait For Build,Check Tag,Deploy", "Gate"]),
        [("stages.Development.taskOrder[1]", "names task 'Deploy', which is not in 'tasks'")],
        id="task-order-unknown",
    ),
    pytest.param(
        set_at((*DEV, "taskOrder"), ["Start Build", "Wait For Build,Check Tag", "Gate,Start Build"]),
        [("stages.Development.taskOrder[2]", "lists task 'Start Build' twice")],
        id="task-order-twice",
    ),
    pytest.param(
        set_at((*DEV, "taskOrder"), ["Start Build", "Wait For Build", "Gate"]),
        [("stages.Development.tasks.Check Tag", "is not listed in 'taskOrder'")],
        id="task-not-ordered",
    ),
    pytest.param(
        set_at((*DEV, "taskOrder"), "Start Build"),
        [("stages.Development.taskOrder", "must be a list of task names")],
        id="task-order-not-a-list",
    ),
    pytest.param(
        set_at((*GATE, "retries"), 3),
        [("stages.Development.tasks.Gate.retries", "is not a known field")],
        id="task-field",
    ),
    pytest.param(
        set_at((*GATE, "ignoreFailure"), "never"),
        [("stages.Development.tasks.Gate.ignoreFailure", "must be true or false, not 'never'")],
        id="ignore-failure",
    ),
    pytest.param(
        set_at((*BUILD, "endpoints"), {"server": 7}),
        [("stages.Development.tasks.Start Build.endpoints.server", "must be the name of an endpoint")],
        id="endpoint",
    ),
    pytest.param(
        set_at((*BUILD, "input", "action"), "fetch"),
        [("stages.Development.tasks.Start Build.input.action", "must be one of get, post, put, patch, delete")],
        id="rest-action",
    ),
    pytest.param(
        set_at((*BUILD, "input", "url"), "ftp://ci.example.com/builds"),
        [("stages.Development.tasks.Start Build.input.url", "must be an http:// or https:// URL, not 'ftp://")],
        id="rest-url-scheme",
    ),
    pytest.param(
        drop_at((*BUILD, "input", "url")),
        [("stages.Development.tasks.Start Build.input.url", "is required")],
        id="rest-url-missing",
    ),
    pytest.param(
        set_at((*BUILD, "input", "body"), "{}"),
        [("stages.Development.tasks.Start Build.input.body", "is not an input of a REST task (expected: action")],
        id="rest-unknown-input",
    ),
    pytest.param(
        set_at((*BUILD, "input", "headers"), ["Accept: application/json"]),
        [("stages.Development.tasks.Start Build.input.headers", "must be an object of header names and values")],
        id="rest-headers",
    ),
    pytest.param(
        set_at((*WAIT, "input", "pollCount"), "ten"),
        [("stages.Development.tasks.Wait For Build.input.pollCount", "must be a whole number above 0, not 'ten'")],
        id="poll-count-text",
    ),
    pytest.param(
        set_at((*WAIT, "input", "pollCount"), 0),
        [("stages.Development.tasks.Wait For Build.input.pollCount", "must be greater than 0")],
        id="poll-count-zero",
    ),
    pytest.param(
        drop_at((*WAIT, "input", "exitCriteria")),
        [("stages.Development.tasks.Wait For Build.input.exitCriteria", "is required")],
        id="poll-exit-missing",
    ),
    pytest.param(
        set_at((*WAIT, "input", "exitCriteria"), {}),
        [("stages.Development.tasks.Wait For Build.input.exitCriteria", "needs a 'success' or a 'failure'")],
        id="poll-exit-empty",
    ),
    pytest.param(
        set_at((*WAIT, "input", "exitCriteria"), "responseCode == 200"),
        [("stages.Development.tasks.Wait For Build.input.exitCriteria", "must be an object with a 'success'")],
        id="poll-exit-not-object",
    ),
    pytest.param(
        set_at((*WAIT, "input", "exitCriteria", "success"), True),
        [("stages.Development.tasks.Wait For Build.input.exitCriteria.success", "must be an expression string")],
        id="poll-exit-not-text",
    ),
    pytest.param(
        set_at((*CHECK, "input"), {"condition": " "}),
        [("stages.Development.tasks.Check Tag.input.condition", "must be a non-empty expression")],
        id="condition-blank",
    ),
    pytest.param(
        set_at(("stages", "Production", "tasks", "Release", "rollback"), {"input": {}}),
        [("stages.Production.tasks.Release.rollback.pipeline", "is required")],
        id="rollback-pipeline-missing",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), PROBLEMS)
def test_each_kind_of_problem_is_reported_at_its_path(mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    # Given a valid document with one thing wrong
    doc = code_stream_document()
    mutate(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then exactly that problem is reported, where it is
    assert_problems(found, expected)


@pytest.mark.parametrize(
    ("mutate", "bad"),
    [
        pytest.param(
            lambda doc: doc["stages"].update({"Dev.Test": doc["stages"].pop("Production")}),
            ("stages.Dev.Test", "stage name 'Dev.Test' must not contain '.'"),
            id="dot-in-stage",
        ),
        pytest.param(
            lambda doc: doc["stages"].update({" Production": doc["stages"].pop("Production")}),
            ("stages. Production", "must be non-empty without leading or trailing spaces"),
            id="space-before-stage",
        ),
        pytest.param(
            rename_task("Gate", "Gate.1", ["Start Build", "Wait For Build,Check Tag", "Gate.1"]),
            ("stages.Development.tasks.Gate.1", "task name 'Gate.1' must not contain '.'"),
            id="dot-in-task",
        ),
        pytest.param(
            rename_task("Gate", "Gate ${x}", ["Start Build", "Wait For Build,Check Tag", "Gate ${x}"]),
            ("stages.Development.tasks.Gate ${x}", "must not contain '${' '}'"),
            id="binding-in-task",
        ),
        pytest.param(
            set_at(("name",), "x" * 201),
            ("name", "the pipeline name must be at most 200 characters, not 201"),
            id="long-pipeline-name",
        ),
        pytest.param(
            set_at(("project",), "shop\x00"),
            ("project", "must not contain control characters"),
            id="nul-in-project",
        ),
        pytest.param(
            rename_task("Gate", "Ga\tte", ["Start Build", "Wait For Build,Check Tag", "Ga\tte"]),
            ("stages.Development.tasks.Ga\tte", "task name 'Ga\\tte' must not contain control characters"),
            id="tab-in-task",
        ),
    ],
)
def test_names_that_would_break_bindings_are_refused(mutate: Mutation, bad: tuple[str, str]) -> None:
    # Given a stage or task whose name holds a character that bindings use as a separator
    doc = code_stream_document()
    mutate(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the name is reported
    path, text = bad
    assert any(problem.path == path and text in problem.message for problem in found), found


def test_a_comma_in_a_task_name_is_refused_since_taskorder_splits_on_it() -> None:
    # Given a task named with a comma, listed as it is named
    doc = code_stream_document()
    rename_task("Gate", "Gate,Final", ["Start Build", "Wait For Build,Check Tag", "Gate,Final"])(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the name is reported (and the taskOrder entry, read as two tasks, names neither)
    assert_problems(
        found,
        [
            ("stages.Development.tasks.Gate,Final", "task name 'Gate,Final' must not contain ','"),
            ("stages.Development.taskOrder[2]", "names task 'Gate'"),
            ("stages.Development.taskOrder[2]", "names task 'Final'"),
            ("stages.Development.tasks.Gate,Final", "is not listed in 'taskOrder'"),
        ],
    )


# -- bindings


BINDING_PROBLEMS = [
    pytest.param(
        "${input.region}",
        "'${input.region}': the pipeline has no input named 'region'",
        id="undeclared-input",
    ),
    pytest.param("${Staging.Deploy.output.id}", "there is no stage named 'Staging'", id="unknown-stage"),
    pytest.param("${Development.Deploy.output}", "stage 'Development' has no task named 'Deploy'", id="unknown-task"),
    pytest.param("${Development.Start Build.result}", "is not a binding: expected input.NAME", id="no-output"),
    pytest.param("${}", "empty binding '${}'", id="empty"),
    pytest.param("${input.}", "names no input value", id="input-without-name"),
    pytest.param("${input.tag..major}", "has an empty or malformed part", id="empty-path-part"),
    pytest.param("${input.tag[x]}", "has an empty or malformed part", id="bad-index"),
    pytest.param("${input.tag", "has an unterminated binding in 'https://x/${input.tag'", id="unterminated"),
]


@pytest.mark.parametrize(("binding", "text"), BINDING_PROBLEMS)
def test_a_bad_binding_is_reported_at_the_input_that_holds_it(binding: str, text: str) -> None:
    # Given a URL holding a binding that cannot be resolved
    doc = code_stream_document()
    set_at((*RELEASE, "input", "url"), f"https://x/{binding}")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then it is reported at that URL, saying what is wrong
    assert_problems(found, [("stages.Production.tasks.Release.input.url", text)])


def test_a_bad_binding_deep_inside_an_input_is_reported_at_its_own_path() -> None:
    # Given a payload with a bad binding inside a list inside an object
    doc = code_stream_document()
    set_at((*BUILD, "input", "payload"), {"images": ["${input.image}", "${input.mirror}"]})(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the path leads to the very string
    assert_problems(
        found,
        [("stages.Development.tasks.Start Build.input.payload.images[1]", "no input named 'mirror'")],
    )


@pytest.mark.parametrize(
    ("where", "binding"),
    [
        pytest.param(CHECK, "${Development.Wait For Build.output.responseCode}", id="same-parallel-group"),
        pytest.param(BUILD, "${Development.Gate.output.result}", id="later-group"),
        pytest.param(GATE, "${Production.Release.output.status}", id="later-stage"),
        pytest.param(GATE, "${Development.Gate.output.result}", id="itself"),
    ],
)
def test_a_binding_to_a_task_that_has_not_run_yet_is_reported_with_its_path(
    where: tuple[str, ...], binding: str
) -> None:
    # Given a task whose input reads the output of a task that has not finished when it starts
    doc = code_stream_document()
    task = doc["stages"]["Development"]["tasks"][where[-1]]
    task["type"] = "REST"
    task["input"] = {"url": f"https://x/{binding}"}
    # When it is loaded
    found = problems_of(doc)
    # Then the binding is reported as reading a task that has not run yet
    stage, task_name = binding.removeprefix("${").split(".")[:2]
    assert_problems(
        found,
        [
            (
                f"stages.Development.tasks.{where[-1]}.input.url",
                f"task '{stage}.{task_name}' has not run yet at this point",
            )
        ],
    )


def test_a_task_may_read_outputs_of_earlier_groups_and_earlier_stages() -> None:
    # Given tasks that read what ran before them, in their own stage and in an earlier one
    doc = code_stream_document()
    set_at((*GATE, "input", "condition"), "${Development.Check Tag.output.result} == true")(doc)
    set_at((*RELEASE, "input", "payload"), {"gate": "${Development.Gate.output.result}"})(doc)
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then the bindings are kept as written
    assert pipeline.task(("Production", "Release")).input["payload"] == {"gate": "${Development.Gate.output.result}"}


def test_pipeline_outputs_may_read_any_task_and_execution_bindings_are_always_known() -> None:
    # Given outputs reading the last task and an input reading the execution's identity
    doc = code_stream_document()
    doc["output"] = {"released": "${Production.Release.output.status}"}
    set_at((*RELEASE, "input", "headers"), {"X-Run": "${executionId} #${executionIndex} by ${requestBy}"})(doc)
    # When it is loaded
    pipeline = load_pipeline(doc, targets)
    # Then it is valid
    assert pipeline.output == {"released": "${Production.Release.output.status}"}


def test_a_pipeline_output_naming_a_task_that_does_not_exist_is_reported() -> None:
    # Given an output reading a task that is not in the pipeline
    doc = code_stream_document()
    doc["output"]["deployed"] = "${Production.Deploy.output.image}"
    # When it is loaded
    found = problems_of(doc)
    # Then it is reported at the output
    assert_problems(found, [("output.deployed", "stage 'Production' has no task named 'Deploy'")])


# -- expressions


def parser_message(text: str) -> str:
    """What the expression parser itself says about `text`."""
    with pytest.raises(ExpressionError) as raised:
        expressions.parse(text)
    return raised.value.message


def test_a_precondition_that_does_not_parse_is_reported_with_the_parsers_message() -> None:
    # Given a preCondition using '=' where '==' was meant
    doc = code_stream_document()
    set_at((*GATE, "preCondition"), "${input.image} = ''")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the parser's own message is reported at the preCondition
    assert found == [Problem("stages.Development.tasks.Gate.preCondition", parser_message("${input.image} = ''"))]
    assert "compare with '=='" in found[0].message


def test_a_condition_and_exit_criteria_that_do_not_parse_are_reported_at_their_paths() -> None:
    # Given a Condition and a POLL success criterion that do not parse
    doc = code_stream_document()
    set_at((*CHECK, "input", "condition"), "${input.tag} != ")(doc)
    set_at((*WAIT, "input", "exitCriteria", "success"), "(responseJson.status == 'done'")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then both are reported with the parser's messages
    assert_problems(
        found,
        [
            ("stages.Development.tasks.Check Tag.input.condition", parser_message("${input.tag} != ")),
            (
                "stages.Development.tasks.Wait For Build.input.exitCriteria.success",
                parser_message("(responseJson.status == 'done'"),
            ),
        ],
    )


def test_bindings_inside_expressions_are_checked_like_any_other() -> None:
    # Given a preCondition reading an undeclared input and a condition reading a later task
    doc = code_stream_document()
    set_at((*GATE, "preCondition"), "${input.region} == 'eu'")(doc)
    set_at((*CHECK, "input", "condition"), "${Development.Gate.output.result}")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then both are reported at their expressions
    assert_problems(
        found,
        [
            ("stages.Development.tasks.Gate.preCondition", "no input named 'region'"),
            ("stages.Development.tasks.Check Tag.input.condition", "'Development.Gate' has not run yet"),
        ],
    )


def test_poll_exit_criteria_may_read_the_response_but_a_condition_may_not() -> None:
    # Given a POLL whose criteria read the response (valid) and a Condition that tries the same
    doc = code_stream_document()
    set_at((*WAIT, "input", "exitCriteria"), {"success": "responseJson.items[0].ready and responseCode == 200"})(doc)
    set_at((*CHECK, "input", "condition"), "responseCode == 200")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then only the Condition is reported, saying where the response can be read
    assert_problems(
        found,
        [("stages.Development.tasks.Check Tag.input.condition", "'responseCode' is only known in the exit criteria")],
    )


def test_a_polls_precondition_cannot_read_the_response_it_has_not_fetched_yet() -> None:
    # Given a POLL task whose preCondition reads responseJson
    doc = code_stream_document()
    set_at((*WAIT, "preCondition"), "responseJson.ready")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the preCondition is reported
    assert_problems(
        found, [("stages.Development.tasks.Wait For Build.preCondition", "'responseJson' is only known in the exit")]
    )


# -- rollback links


def test_a_rollback_link_to_the_pipeline_itself_is_refused() -> None:
    # Given a task whose rollback is its own pipeline
    doc = code_stream_document()
    set_at((*GATE, "rollback"), {"pipeline": "RollingUpgrade-Example"})(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the link is refused
    assert found == [
        Problem("stages.Development.tasks.Gate.rollback.pipeline", "a pipeline cannot be its own rollback")
    ]


def test_a_rollback_link_to_a_pipeline_that_does_not_exist_is_refused() -> None:
    # Given a stage whose rollback pipeline was never created
    doc = code_stream_document()
    set_at((*DEV, "rollback", "pipeline"), "Dev Undo")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then the link names the missing pipeline and the project it was looked for in
    assert found == [
        Problem("stages.Development.rollback.pipeline", "rollback pipeline 'Dev Undo' does not exist in project 'demo'")
    ]


def test_a_rollback_link_must_give_what_its_target_needs_and_nothing_it_lacks() -> None:
    # Given a stage link that gives an input its target lacks and not the mandatory one it needs
    doc = code_stream_document()
    set_at((*DEV, "rollback", "input"), {"image": "${input.image}"})(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then both are reported
    assert found == [
        Problem("stages.Development.rollback.input.image", "'Dev Rollback' has no input named 'image'"),
        Problem("stages.Development.rollback.input", "mandatory input 'previousImage' of 'Dev Rollback' is not given"),
    ]


def test_a_stage_rollback_may_read_its_own_stage_but_not_a_later_one() -> None:
    # Given a stage link reading the last task of its own stage, and one reading a later stage
    doc = code_stream_document()
    set_at((*DEV, "rollback", "input", "previousImage"), "${Development.Gate.output.result}")(doc)
    load_pipeline(doc, targets)
    set_at((*DEV, "rollback", "input", "previousImage"), "${Production.Release.output.status}")(doc)
    # When the second is loaded
    found = problems_of(doc)
    # Then only the later stage is refused
    assert_problems(
        found, [("stages.Development.rollback.input.previousImage", "'Production.Release' has not run yet")]
    )


def test_a_task_rollback_may_read_its_own_group_but_not_what_runs_after() -> None:
    # Given a task link reading a task of its own parallel group (which may have finished)
    doc = code_stream_document()
    set_at(
        (*CHECK, "rollback"), {"pipeline": "Gate Rollback", "input": {"reason": "${Development.Wait For Build.output}"}}
    )(doc)
    load_pipeline(doc, targets)
    # When it reads a task of the next group instead
    set_at((*CHECK, "rollback", "input", "reason"), "${Development.Gate.output}")(doc)
    found = problems_of(doc)
    # Then that is refused
    assert_problems(found, [("stages.Development.tasks.Check Tag.rollback.input.reason", "has not run yet")])


# -- all at once


def test_a_document_with_seven_problems_reports_exactly_those_seven() -> None:
    # Given a document with seven unrelated problems, from the top level down to bindings and links
    doc = code_stream_document()
    doc["colour"] = "blue"
    doc["concurrency"] = 0
    doc["_inputMeta"]["region"] = {"mandatory": True}
    set_at((*BUILD, "input", "url"), "ftp://ci.example.com/builds")(doc)
    set_at((*WAIT, "input", "pollCount"), "ten")(doc)
    set_at((*RELEASE, "input", "url"), "https://deploy.example.com/${input.region}")(doc)
    set_at((*GATE, "rollback", "pipeline"), "Gate Undo")(doc)
    # When it is loaded
    found = problems_of(doc)
    # Then all seven come back in one error, each at its path
    assert_problems(
        found,
        [
            ("colour", "is not a known field"),
            ("concurrency", "from 1 to 1000"),
            ("_inputMeta.region", "which is not in 'input'"),
            ("stages.Development.tasks.Start Build.input.url", "must be an http:// or https:// URL"),
            ("stages.Development.tasks.Wait For Build.input.pollCount", "must be a whole number"),
            ("stages.Production.tasks.Release.input.url", "no input named 'region'"),
            ("stages.Development.tasks.Gate.rollback.pipeline", "'Gate Undo' does not exist"),
        ],
    )


def test_when_the_run_order_itself_is_broken_its_problems_are_reported_without_guessing_at_bindings() -> None:
    # Given a stage left out of stageOrder, and a binding to a task of that stage
    doc = code_stream_document()
    doc["stageOrder"] = ["Development"]
    doc["output"] = {"released": "${Production.Release.output.status}"}
    # When it is loaded
    found = problems_of(doc)
    # Then the order is reported (whether the binding is visible cannot be told until it is fixed)
    assert found == [Problem("stages.Production", "is not listed in 'stageOrder'")]


# -- values JSON cannot hold, and oversized documents


def test_an_unquoted_yaml_date_is_reported_rather_than_saved() -> None:
    # Given a YAML document with an unquoted date as an input default
    text = yaml.safe_dump(code_stream_document(), sort_keys=False).replace("tag: latest", "tag: 2024-05-01")
    doc = parse_text(text, "application/yaml")
    # When it is loaded
    found = problems_of(doc)
    # Then the value is reported with a hint to quote it
    assert_problems(found, [("input.tag", "not a date (quote dates and times in YAML")])


def test_a_number_that_is_not_finite_is_reported() -> None:
    # Given a JSON body whose poll interval is NaN (which Python's JSON reader accepts)
    body = json.dumps(code_stream_document()).replace('"pollIntervalSeconds": 5', '"pollIntervalSeconds": NaN')
    doc = parse_text(body, "application/json")
    # When it is loaded
    found = problems_of(doc)
    # Then the value is reported
    assert_problems(found, [("stages.Development.tasks.Wait For Build.input.pollIntervalSeconds", "finite number")])


def test_a_deeply_nested_document_is_refused_without_crashing() -> None:
    # Given a payload nested far deeper than any real one
    doc = code_stream_document()
    nested: object = "bottom"
    for _ in range(5_000):
        nested = [nested]
    doc["stages"]["Development"]["tasks"]["Start Build"]["input"]["payload"] = nested
    # When it is loaded
    found = problems_of(doc)
    # Then one problem says it is nested too deeply
    assert found == [Problem("", f"the document is nested more than {decoding.MAX_NESTING} levels deep")]


def test_a_small_yaml_text_that_expands_through_aliases_is_refused_quickly() -> None:
    # Given 2 KB of YAML whose aliases expand to a billion strings
    layers = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    layers += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    plain = code_stream_document()
    del plain["tags"]
    text = "tags:\n  - {" + ", ".join(layers) + "}\n" + yaml.safe_dump(plain)
    doc = parse_text(text, "application/yaml")
    # When it is loaded
    started = time.monotonic()
    found = problems_of(doc)
    # Then it is refused, in well under the time it would take to walk it
    assert time.monotonic() - started < 10
    assert len(found) == 1 and "holds more than" in found[0].message


# -- decoding text


def test_yaml_and_json_text_decode_to_the_same_document() -> None:
    # Given the same document as YAML text, JSON text with its content type, and JSON text without one
    doc = code_stream_document()
    # When each is decoded
    from_yaml = parse_text(yaml.safe_dump(doc), "application/yaml")
    from_json = parse_text(json.dumps(doc).encode(), "application/json; charset=utf-8")
    untyped = parse_text(json.dumps(doc), None)
    # Then all three are the document
    assert from_yaml == from_json == untyped == doc


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        pytest.param("name: [unclosed", "application/yaml", "not valid YAML or JSON", id="yaml"),
        pytest.param('{"name": "x",}', "application/json", "not valid JSON", id="json"),
        pytest.param("stages:\n\t- x", None, "not valid YAML or JSON", id="yaml-tab"),
        pytest.param("[" * 50_000, "application/json", "nested too deeply", id="json-deep"),
        pytest.param("[" * 50_000, "application/yaml", "nested too deeply", id="yaml-deep"),
        pytest.param("!!int ''", "application/yaml", "not valid YAML or JSON", id="yaml-empty-int"),
        pytest.param("n: " + "9" * 5_000, "application/yaml", "not valid YAML or JSON", id="yaml-huge-int"),
    ],
)
def test_a_body_that_does_not_decode_is_a_bad_request(body: str, content_type: str | None, text: str) -> None:
    # Given a body that is not valid in the language it claims
    # When it is decoded
    with pytest.raises(BadRequest) as raised:
        parse_text(body, content_type)
    # Then it is a bad request saying so
    assert text in raised.value.message
    assert raised.value.http_status == 400


def test_a_document_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    # Given a body one byte over the limit
    body = b"#" * (decoding.MAX_DOCUMENT_BYTES + 1)
    # When it is decoded
    with pytest.raises(BadRequest) as raised:
        parse_text(body, "application/yaml")
    # Then it is refused for its size
    assert raised.value.message == f"the document is larger than {decoding.MAX_DOCUMENT_BYTES} bytes"


# -- nothing but PipelineInvalid and BadRequest, whatever comes in

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
INTERESTING = st.sampled_from(
    ["REST", "POLL", "Condition", "Development", "Gate", "${", "${input.tag}", "${Development.Gate.output}", "a,b"]
)
JSON_VALUES = st.recursive(
    JSON_SCALARS | INTERESTING,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Keys that appear in pipeline documents, and a few that no JSON has, as YAML gives them.
KEYS = st.sampled_from(["type", "input", "url", "exitCriteria", "success", "taskOrder", "tasks", "rollback", "name"])
YAML_KEYS = st.integers() | st.booleans() | st.none()


def _paths(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


PATHS = _paths(code_stream_document())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_any_json_value_as_a_document_is_refused_with_problems_and_nothing_else(doc: object) -> None:
    # Given any JSON value at all
    # When it is loaded
    # Then it either loads or raises PipelineInvalid with at least one problem
    try:
        load_pipeline(doc, targets)
    except PipelineInvalid as error:
        assert error.details


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PATHS[1:]),
            JSON_VALUES | st.dictionaries(KEYS | YAML_KEYS, JSON_VALUES, max_size=3),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_valid_document_with_any_part_replaced_loads_and_round_trips_or_lists_its_problems(
    changes: list[tuple[tuple[str | int, ...], object]],
) -> None:
    # Given a valid document with some of its parts replaced by arbitrary values
    doc = code_stream_document()
    for path, value in changes:
        # An earlier change may have removed the place this one would go.
        with contextlib.suppress(KeyError, IndexError, TypeError):
            set_at(path, value)(doc)
    # When it is loaded
    try:
        pipeline = load_pipeline(doc, targets)
    except PipelineInvalid as error:
        # Then it fails only with problems, each with a message
        assert error.details and all(problem.message for problem in error.details)
        return
    # Or it loads, and reads back the same after being written out
    assert load_pipeline(to_document(pipeline), targets) == pipeline


YAML_PIECES = st.sampled_from(
    [
        *"{}[]:,-&*!|>'\"#%@`? \n\t.0123456789abe$",
        *("!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "<<: ", "---\n", ".inf", "0x", "2001-12-14"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(YAML_PIECES, max_size=25).map("".join) | st.text(max_size=40),
    st.sampled_from([None, "application/json", "application/yaml", "text/plain"]),
)
def test_any_text_decodes_or_is_a_bad_request_and_whatever_decodes_loads_or_lists_problems(
    text: str, content_type: str | None
) -> None:
    # Given any text, under any content type
    try:
        # When it is decoded
        doc = parse_text(text, content_type)
    except BadRequest:
        # Then it is either a bad request
        return
    # Or a document that loads or lists its problems
    try:
        load_pipeline(doc, targets)
    except PipelineInvalid as error:
        assert error.details
