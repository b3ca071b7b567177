"""The pipeline workspace CI tasks run in, as checked when a pipeline is saved and as a CI task is queued."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import gaps
from orchestrator.document import load_pipeline
from orchestrator.errors import PipelineInvalid
from orchestrator.workspace import WORKSPACE_ROLE, endpoints_of, for_run

Doc = dict[str, Any]


def document(workspace: Doc, task_input: Doc | None = None) -> Doc:
    given = task_input if task_input is not None else {"steps": ["make"], "export": ["VERSION"]}
    return {
        "name": "Build",
        "stageOrder": ["Build"],
        "workspace": workspace,
        "stages": {"Build": {"taskOrder": ["Compile"], "tasks": {"Compile": {"type": "CI", "input": given}}}},
    }


def problems(doc: Doc) -> dict[str, str]:
    with pytest.raises(PipelineInvalid) as refused:
        load_pipeline(doc, None)
    return {problem.path: problem.message for problem in refused.value.details}


def test_a_ci_task_is_queued_with_the_workspace_as_input_and_endpoint() -> None:
    # Given a pipeline whose workspace binds the image from an input
    doc = document({"type": "K8S", "endpoint": "build-cluster", "image": "${input.image}", "limits": {"cpu": "500m"}})
    doc["input"] = {"image": "builder:1"}
    pipeline = load_pipeline(doc, None)
    task = pipeline.task(("Build", "Compile"))

    # Then the task uses the workspace's endpoint, and is queued with the workspace as its input
    assert endpoints_of(pipeline, task) == {WORKSPACE_ROLE: "build-cluster"}
    queued = for_run(pipeline, task)
    assert queued.input["workspace"]["image"] == "${input.image}"
    assert queued.endpoints == {WORKSPACE_ROLE: "build-cluster"}
    # ... and a missing endpoint is a warning at workspace.endpoint, not a refusal
    found = gaps.warnings(pipeline, endpoints=lambda _project, _name: False)
    assert [problem.path for problem in found] == ["workspace.endpoint"]


def test_a_workspace_ci_tasks_cannot_run_in_is_refused_naming_each_field() -> None:
    # When the workspace lacks its image, has a limit that is no quantity and a field Code Stream never writes
    found = problems(document({"type": "K8S", "endpoint": "c", "limits": {"cpu": "lots"}, "colour": "blue"}))

    # Then each is named
    assert "builder image" in found["workspace.image"]
    assert "must be a number" in found["workspace.limits.cpu"]
    assert "is not a workspace field" in found["workspace.colour"]


def test_a_ci_task_input_is_checked_and_may_not_bring_its_own_workspace() -> None:
    # When a CI task exports a name no shell variable has, lists no step, and writes a workspace of its own
    workspace = {"type": "K8S", "endpoint": "c", "image": "builder:1"}
    found = problems(document(workspace, {"steps": [], "export": ["APP-VERSION"], "workspace": {}}))

    # Then the pipeline is refused, naming each
    assert found["stages.Build.tasks.Compile.input.steps"] == "a CI task needs at least one step"
    assert "variable name" in found["stages.Build.tasks.Compile.input.export[0]"]
    assert "is the pipeline's" in found["stages.Build.tasks.Compile.input.workspace"]


def test_a_pipeline_without_ci_tasks_keeps_any_workspace_unchecked() -> None:
    # Given an export's empty workspace on a pipeline without CI tasks
    doc = document({"endpoint": "", "image": ""})
    doc["stages"]["Build"]["tasks"]["Compile"] = {"type": "Condition", "input": {"condition": "1 == 1"}}

    # Then it loads, and its workspace is kept as written
    assert load_pipeline(doc, None).workspace == {"endpoint": "", "image": ""}
