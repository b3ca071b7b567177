"""Stories about what Code Stream's exports write that Rollway reads as they are: its binding forms (`${name}`,
`${status}`, `${Stage.Task.status}`, `${Stage.Task.input.X}`, the `\\${` escape, paths into a JSON
`responseBody`), numbers and flags as text, the `rollbacks:` list, and what keeps a pipeline disabled."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import yaml

from orchestrator import gaps
from orchestrator.bindings import Scope, resolve
from orchestrator.document import load_pipeline
from orchestrator.errors import BindingError, PipelineInvalid
from orchestrator.pipeline import RollbackLink
from orchestrator.structured import bind_documents, bind_headers, bind_url

Doc = dict[str, Any]
LOOKUP = ("Prepare", "Get Project")


def scope() -> Scope:
    """An execution of 'Provision' whose lookup task answered JSON in its body."""
    return Scope(
        input={"name": "Demo"},
        outputs={LOOKUP: {"responseBody": '{"content": [{"id": "p-17"}]}', "responseCode": 200}},
        pipeline_name="Provision",
        status="RUNNING",
        statuses={LOOKUP: "COMPLETED"},
        task_inputs={LOOKUP: {"url": "https://cloud/projects?name=${input.name}"}},
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("${name}", "Provision", id="pipeline-name"),
        pytest.param("${status}", "RUNNING", id="execution-status"),
        pytest.param("${Prepare.Get Project.status}", "COMPLETED", id="task-status"),
        pytest.param("${Prepare.Get Project.input.url}", "https://cloud/projects?name=Demo", id="task-input-bound"),
        pytest.param("${Prepare.Get Project.output.responseBody.content[0].id}", "p-17", id="json-body"),
        pytest.param("id=\\${resource.id} for ${name}", "id=${resource.id} for Provision", id="escape"),
        pytest.param("\\${resource.id}", "${resource.id}", id="escape-alone"),
    ],
)
def test_code_stream_binding_forms_resolve_to_what_they_name(text: str, value: object) -> None:
    # Given an execution, When a value in one of Code Stream's forms is resolved, Then it gives what it names
    assert resolve(text, scope().lookup) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "${Prepare.Get Project.output.responseBody.content[0].id}",
            "'responseBody' is not JSON, so no path leads into it",
            id="body-not-json",
        ),
        pytest.param("${Prepare.Other.status}", "task 'Prepare.Other' has not run", id="status-not-run"),
        pytest.param("${Prepare.Get Project.status.x}", "a task's status is one word", id="path-into-status"),
        pytest.param("${Prepare.Get Project.input}", "names no input of task", id="task-input-without-name"),
    ],
)
def test_a_code_stream_binding_that_cannot_resolve_says_why(text: str, message: str) -> None:
    # Given a lookup task whose body was text, not JSON
    text_body = dataclasses.replace(scope(), outputs={LOOKUP: {"responseBody": "project Demo: p-17"}})
    # When the binding is resolved, Then it fails naming what is wrong
    with pytest.raises(BindingError, match=message):
        resolve(text, text_body.lookup)


def test_an_escaped_binding_reaches_a_url_and_a_yaml_document_as_literal_text() -> None:
    # Given a URL and a manifest each holding an escaped binding beside a real one
    # When they are bound
    url = bind_url("https://x/${name}/\\${id}", scope().lookup)
    manifest = bind_documents("metadata:\n  name: ${name}\n  note: \\${resource.name}\n", scope().lookup, "yaml")
    # Then the escape is the literal `${`, the binding its value
    assert url == "https://x/Provision/${id}"
    assert manifest == "metadata:\n  name: Provision\n  note: ${resource.name}\n"


def test_an_escaped_binding_reaches_headers_as_literal_text_beside_a_real_one() -> None:
    # Given REST headers holding an escaped binding alone and beside a real one
    headers = {"X-Template": "\\${resource.name}", "X-Run": "${name}/\\${resource.id}"}
    # When they are bound, Then each escape is the literal `${` and the binding its value
    assert bind_headers(headers, scope().lookup, "headers") == {
        "X-Template": "${resource.name}",
        "X-Run": "Provision/${resource.id}",
    }


def test_a_bound_value_holding_the_escape_reaches_the_target_as_it_is() -> None:
    # Given an input whose value holds the escape's characters (text the pipeline did not write)
    given = dataclasses.replace(scope(), input={"name": "a\\${b}"})
    # When it is bound into longer text, a URL's start and a manifest, beside an escape the pipeline wrote
    text = resolve("${input.name} and \\${c}", given.lookup)
    url = bind_url("${input.name}/x/\\${c}", given.lookup)
    manifest = bind_documents("note: ${input.name} \\${c}\n", given.lookup, "yaml")
    # Then only the pipeline's own escape became `${`: the value is passed on untouched
    assert text == "a\\${b} and ${c}"
    assert url == "a\\${b}/x/${c}"
    assert manifest == "note: a\\${b} ${c}\n"


def test_an_escape_inside_a_quoted_yaml_string_is_accepted_when_saved_as_it_runs() -> None:
    # Given a manifest whose double-quoted value holds the escape (`\\$` alone is no YAML escape)
    manifest = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {template: "\\${resource.name}"}\n'
    document = with_input(export(), yaml=manifest)
    # When it is saved, Then it loads, and bound it is the literal text
    load_pipeline(document, None)
    (config_map,) = yaml.safe_load_all(str(bind_documents(manifest, scope().lookup, "yaml")))
    assert config_map["data"] == {"template": "${resource.name}"}


def k8s_task() -> Doc:
    manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
    return {"type": "K8S", "endpoints": {"kubernetesServer": "dev"}, "input": {"action": "APPLY", "yaml": manifest}}


def export(**fields: Any) -> Doc:
    """A two-task export, in Code Stream's shape."""
    return {
        "kind": "PIPELINE",
        "name": "Release",
        "project": "shop",
        "enabled": True,
        "stageOrder": ["Dev"],
        "stages": {"Dev": {"taskOrder": ["Apply", "Check"], "tasks": {"Apply": k8s_task(), "Check": check()}}},
        **fields,
    }


def check(condition: str = "1 == 1") -> Doc:
    return {"type": "Condition", "input": {"condition": condition}}


def with_input(document: Doc, **fields: Any) -> Doc:
    document["stages"]["Dev"]["tasks"]["Apply"]["input"].update(fields)
    return document


def nothing(_project: str, _name: str) -> bool:
    """A project that has no endpoints and no variables."""
    return False


def problems(document: Doc) -> list[str]:
    with pytest.raises(PipelineInvalid) as raised:
        load_pipeline(document, None)
    return [str(problem) for problem in raised.value.details]


def test_numbers_and_flags_written_as_text_are_read_as_exports_write_them() -> None:
    # Given an export writing a K8S timeout, its flags and the concurrency as text, and Git fields left empty
    document = with_input(
        export(concurrency="5"), timeout="5", continueOnConflict="false", filepath="", scmConstants={}
    )
    document["stages"]["Dev"]["tasks"]["Check"]["ignoreFailure"] = "true"
    # When it is loaded
    pipeline = load_pipeline(document, None)
    # Then it reads as written
    assert pipeline.concurrency == 5
    assert pipeline.stages["Dev"].tasks["Check"].ignore_failure is True
    # ... while text that says no number or flag is still refused
    bad = with_input(export(), timeout="soon", continueOnConflict="perhaps")
    assert [text.split(": ")[0] for text in problems(bad)] == [
        "stages.Dev.tasks.Apply.input.timeout",
        "stages.Dev.tasks.Apply.input.continueOnConflict",
    ]


def test_a_git_source_loads_with_its_scm_endpoint_and_is_refused_without_it() -> None:
    # Given a K8S task reading its YAML from a file in Git, as Code Stream's source control option writes it
    document = with_input(export(), filepath="k8s/web.yaml", scmConstants={"TAG": "1.4"}, yaml="")
    apply = document["stages"]["Dev"]["tasks"]["Apply"]
    # When loaded without the git endpoint it reads from, Then that endpoint is asked for
    (problem,) = problems(copy.deepcopy(document))
    assert problem.startswith("stages.Dev.tasks.Apply.endpoints.scm: a K8S task with a filepath needs the git endpoint")
    # ... and with it, it loads, the file and its constants kept for the run
    apply["endpoints"]["scm"] = "web-repo"
    loaded = load_pipeline(document, None).stages["Dev"].tasks["Apply"]
    assert loaded.input["filepath"] == "k8s/web.yaml" and loaded.input["scmConstants"] == {"TAG": "1.4"}
    assert loaded.endpoints["scm"] == "web-repo"


def test_the_rollbacks_list_links_stages_and_tasks_and_never_overrides_a_link() -> None:
    # Given an export linking its stage and one task through `rollbacks:`
    entries = [
        {"name": "Undo Dev", "stage": "Dev", "inputs": {"why": "${Dev.Apply.status}"}},
        {"name": "Undo Apply", "stage": "Dev", "task": "Apply", "inputs": {}},
    ]
    # When loaded
    pipeline = load_pipeline(export(rollbacks=entries), None)
    # Then the stage and the task have those links
    assert pipeline.stages["Dev"].rollback == RollbackLink("Undo Dev", {"why": "${Dev.Apply.status}"})
    assert pipeline.stages["Dev"].tasks["Apply"].rollback == RollbackLink("Undo Apply", {})
    # ... and an entry for a link already written, or for a stage or task that is not there, is refused
    twice = export(rollbacks=[*entries, entries[0]])
    assert problems(twice) == ["rollbacks[2]: stage 'Dev' already has a rollback (Undo Dev)"]
    nowhere = export(rollbacks=[{"name": "X", "stage": "Prod"}, {"name": "X", "stage": "Dev", "task": "Gone"}])
    assert problems(nowhere) == [
        "rollbacks[0].stage: names stage 'Prod', which is not in 'stages'",
        "rollbacks[1].task: names task 'Gone', which is not in stage 'Dev'",
    ]


def test_new_binding_forms_are_checked_when_saved() -> None:
    # Given a task binding another's missing input, and texts with an escape and with an unterminated binding
    document = export()
    document["stages"]["Dev"]["tasks"]["Check"] = check('${Dev.Apply.input.nope} == "x"')
    document["output"] = {"kept": "\\${literal}", "broken": "${input.x"}
    # When it is loaded, Then only the missing input and the unterminated binding are problems
    assert problems(document) == [
        "output.broken: has an unterminated binding in '${input.x'",
        "stages.Dev.tasks.Check.input.condition: '${Dev.Apply.input.nope}': task 'Dev.Apply' has no input named 'nope'",
    ]


def test_missing_names_and_unrun_types_save_the_pipeline_disabled_with_one_warning_each() -> None:
    # Given an export naming a missing endpoint, a missing variable twice, and holding a Blueprint task
    document = with_input(export(), namespace="${var.ns}")
    document["stages"]["Dev"]["tasks"]["Check"] = check("${var.ns} == ${var.ns}")
    document["stages"]["Dev"]["taskOrder"].append("Provision")
    document["stages"]["Dev"]["tasks"]["Provision"] = {"type": "Blueprint", "input": {"blueprintName": "web"}}
    # When it is loaded
    pipeline = load_pipeline(document, None, endpoints=nothing, variables=nothing)
    # Then it is disabled, with one warning per task type, endpoint and variable
    assert pipeline.enabled is False
    assert [problem.path for problem in gaps.warnings(pipeline, nothing, nothing)] == [
        "stages.Dev.tasks.Provision.type",
        "stages.Dev.tasks.Apply.endpoints.kubernetesServer",
        "stages.Dev.tasks.Apply.input.namespace",
    ]
    # ... while a type that is not Code Stream's either is still refused
    document["stages"]["Dev"]["tasks"]["Provision"]["type"] = "Teleport"
    assert "unknown task type 'Teleport'" in problems(document)[0]
