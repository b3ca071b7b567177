"""Moving from Code Stream: its exports (tests/codestream/, written for these tests in the documented shape) go in
with `rollway import codestream` as they are, each with exactly the warnings it deserves, and the runnable ones run
to COMPLETED against local services (an HTTP server, kubesim) with a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kubernetes import client as k8s

from api.cli import cli
from kubesim import KubeSim

from rollway_testing import TOKEN, ServedApp, ended, task_of

Doc = dict[str, Any]
CORPUS = Path(__file__).parent / "codestream"
PROJECT = "migration"

# Every file of the corpus, with what importing it must say: per pipeline, the paths of its warnings.
EXPECTED: dict[str, dict[str, list[str]]] = {
    "approval.yaml": {"Change Approval": []},
    "ci-build.yaml": {"App Build": [], "Docker Host Build": ["workspace.type", "workspace.endpoint"]},
    "k8s-from-git.yaml": {"Web From Git": ["stages.Dev.tasks.Apply From Repo.endpoints.scm"]},
    "k8s-rollout.yaml": {"Web Rollback": [], "Web Release": []},
    "missing-endpoint.yaml": {
        "Staging Smoke": [
            "stages.Staging.tasks.Create Namespace.endpoints.kubernetesServer",
            "stages.Staging.tasks.Create Namespace.input.yaml",
        ]
    },
    "rest-release.yaml": {"Register Project Resource": []},
    "ssh-configure.yaml": {"Configure Web Hosts": ["stages.Configure.tasks.Install.input.password"]},
    "unsupported-types.yaml": {
        "Legacy Provisioning": [
            "stages.Provision.tasks.Deploy Blueprint.type",
            "stages.Provision.tasks.Configure Host.type",
            "stages.Provision.tasks.Run Workflow.type",
            "stages.Provision.tasks.Build App.type",
            "stages.Provision.tasks.Build App.endpoints.jenkinsServer",
        ]
    },
}
UNRUN = (("Deploy Blueprint", "Blueprint"), ("Configure Host", "PowerShell"), ("Build App", "Jenkins"))
REFUSED = {
    "refused.yaml": [
        "stages.Deploy.tasks.Beam Up.type: unknown task type 'Teleport'",
        "Apply From Git.endpoints.scm: a K8S task with a filepath needs the git endpoint it reads from",
        "rollbacks[0]: stage 'Deploy' already has a rollback",
    ]
}


def rollway(api: ServedApp, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--url", api.url, *args], env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None})


def import_files(api: ServedApp, *names: str) -> Result:
    return rollway(api, "import", "codestream", *(str(CORPUS / name) for name in names))


def pipeline(api: ServedApp, name: str) -> Doc:
    (found,) = api.http.get("/api/pipelines", params={"project": PROJECT, "name": name}).json()
    return dict(found)


def add_variable(api: ServedApp, name: str, value: str) -> None:
    api.create_at("/api/variables", {"name": name, "project": PROJECT, "type": "REGULAR", "value": value})


def add_endpoint(api: ServedApp, name: str, sim: KubeSim) -> None:
    api.create_at("/api/endpoints", {"name": name, "project": PROJECT, "url": sim.url, "insecure": True})


def run(api: ServedApp, found: Doc) -> Doc:
    answer = api.http.post(f"/api/pipelines/{found['id']}/executions", json={})
    assert answer.status_code == 202, answer.text
    return ended(api, answer.json()["executionId"])


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim(ready_delay=0.1) as sim:
        yield sim


def test_each_export_imports_with_exactly_its_warnings_and_a_bad_file_saves_nothing(
    api: ServedApp, cluster: KubeSim
) -> None:
    # Given the project has the endpoint and the variable most of the exports name
    add_endpoint(api, "dev-cluster", cluster)
    add_variable(api, "vraFQDN", "https://cloud.example.com")

    # When the whole corpus is imported
    result = import_files(api, *sorted(EXPECTED), *REFUSED)

    # Then every pipeline is saved with exactly its warnings, disabled when it has any, and the report says so
    assert result.exit_code == 1, result.output
    for file, pipelines in EXPECTED.items():
        for name, paths in pipelines.items():
            found = pipeline(api, name)
            assert [warning["path"] for warning in found["_warnings"]] == paths, found["_warnings"]
            line = f"{CORPUS / file}: pipeline {PROJECT}/{name} saved"
            if paths:
                assert found["enabled"] is False
                count = f"{len(paths)} warning{'s' if len(paths) > 1 else ''}"
                assert f"{line} disabled with {count} (created)" in result.output
            else:
                assert f"{line}, {'enabled' if found['enabled'] else 'disabled'} (created)" in result.output
    # ... the refused file is reported with its reasons, and neither of its pipelines is saved
    refusal = result.output.split(f"{CORPUS / 'refused.yaml'}: refused:")[1]
    for reason in REFUSED["refused.yaml"]:
        assert reason in refusal
    assert api.http.get("/api/pipelines", params={"name": "Half Saved"}).json() == []
    # ... and the `rollbacks:` list became the stage's rollback link, the workspace and options kept
    release = pipeline(api, "Web Release")
    assert release["stages"]["Development"]["rollback"] == {"pipeline": "Web Rollback", "input": {"deployment": "web"}}
    assert pipeline(api, "Register Project Resource")["options"] == ["GIT_TRIGGER"]
    assert release["workspace"]["autoCloneForTrigger"] is False


def test_a_rest_export_binds_into_the_json_answer_and_passes_an_escaped_binding_through(
    api: ServedApp, web: Any, worker: Any
) -> None:
    # Given the cloud API answers the project lookup in JSON, and the export is imported with its variable
    add_variable(api, "vraFQDN", web.url_for("").rstrip("/"))
    web.expect_request("/iaas/api/projects", query_string="name=Demo").respond_with_json(
        {"content": [{"id": "p-17", "name": "Demo"}], "totalElements": 1}
    )
    web.expect_request("/iaas/api/resources", method="POST").respond_with_json({"id": "r-1"}, status=201)
    assert import_files(api, "rest-release.yaml").exit_code == 0

    # When it runs
    done = run(api, pipeline(api, "Register Project Resource"))

    # Then it completes, the id from the JSON answer reaches the next call and the output, and the escaped
    # binding reaches the target as the literal text
    assert done["status"] == "COMPLETED", done["statusMessage"]
    assert done["output"] == {"projectId": "p-17"}
    (posted,) = [request for request, _ in web.log if request.method == "POST"]
    assert json.loads(posted.get_data(as_text=True)) == {"projectId": "p-17", "name": "${resource.name}-1"}
    assert posted.headers["X-Pipeline"] == "Register Project Resource"
    assert posted.headers["X-Run-Status"] == "RUNNING"
    assert posted.headers["X-Lookup"] == web.url_for("/iaas/api/projects") + "?name=Demo"
    assert posted.headers["X-Template"] == "${resource.name} for Register Project Resource"

    # When the lookup answers with text that is not JSON
    web.clear()
    web.expect_request("/iaas/api/projects").respond_with_data("project Demo: p-17", content_type="text/plain")
    failed = run(api, pipeline(api, "Register Project Resource"))

    # Then the task binding into it fails, naming the path it could not follow
    assert failed["status"] == "FAILED"
    message = task_of(failed, "Register", "Create Resource")["statusMessage"]
    assert "'responseBody' is not JSON" in message, message
    assert all(request.method == "GET" for request, _ in web.log)


def test_a_k8s_export_with_text_numbers_and_a_rollbacks_list_runs_on_kubesim(
    api: ServedApp, cluster: KubeSim, worker: Any
) -> None:
    # Given the cluster's endpoint and the imported release with its rollback
    add_endpoint(api, "dev-cluster", cluster)
    assert import_files(api, "k8s-rollout.yaml").exit_code == 0

    # When the release runs
    done = run(api, pipeline(api, "Web Release"))

    # Then it completes, and the escaped binding in its YAML reached the cluster as the literal text
    assert done["status"] == "COMPLETED", done["statusMessage"]
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    deployment = apps.read_namespaced_deployment("web", "shop")
    assert deployment.metadata.annotations["rollout.example/template"] == "${resource.name}"


def test_a_ci_export_runs_its_steps_as_a_job_on_kubesim_and_a_later_task_binds_its_export(
    api: ServedApp, cluster: KubeSim, worker: Any
) -> None:
    # Given the workspace's endpoint and the imported CI build
    add_endpoint(api, "dev-cluster", cluster)
    assert import_files(api, "ci-build.yaml").exit_code == 0

    # When the build runs
    done = run(api, pipeline(api, "App Build"))

    # Then it completes: the step's export reached the Condition and the output, and the steps ran as one Job
    assert done["status"] == "COMPLETED", done["statusMessage"]
    assert done["output"] == {"version": "2.1.0-1"}
    compile_task = task_of(done, "Build", "Compile")
    assert compile_task["output"]["logs"] == "Building 2.1.0"
    assert compile_task["output"]["artifacts"] == ["target/app.jar"]
    (job,) = k8s.BatchV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url))).list_namespaced_job("default").items
    assert job.metadata.name == compile_task["output"]["jobName"]
    assert job.spec.template.spec.containers[0].image == "maven:3-openjdk-17"


def test_a_pipeline_missing_an_endpoint_and_a_variable_is_enabled_once_they_exist(
    api: ServedApp, cluster: KubeSim, worker: Any
) -> None:
    # Given the export is imported before its endpoint and variable exist: saved disabled
    assert import_files(api, "missing-endpoint.yaml").exit_code == 0
    smoke = pipeline(api, "Staging Smoke")

    # When it is enabled now
    refused = api.http.patch(f"/api/pipelines/{smoke['id']}", json={"enabled": True})

    # Then it is refused, listing both missing names
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "'staging-cluster'" in message and "'smokeNamespace'" in message
    assert len(refused.json()["error"]["details"]) == 2

    # When they are created, Then it can be enabled, has no warnings left, and runs to COMPLETED
    add_endpoint(api, "staging-cluster", cluster)
    add_variable(api, "smokeNamespace", "smoke")
    enabled = api.http.patch(f"/api/pipelines/{smoke['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["_warnings"] == []
    done = run(api, enabled.json())
    assert done["status"] == "COMPLETED", done["statusMessage"]
    assert k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url))).read_namespace("smoke")


def test_a_pipeline_of_types_rollway_does_not_run_is_kept_but_never_runs(api: ServedApp) -> None:
    # Given the export with Blueprint, PowerShell, vRO and Jenkins tasks, imported
    assert import_files(api, "unsupported-types.yaml").exit_code == 0
    legacy = pipeline(api, "Legacy Provisioning")

    # When it is run, or enabled
    started = api.http.post(f"/api/pipelines/{legacy['id']}/executions", json={})
    enabled = api.http.patch(f"/api/pipelines/{legacy['id']}", json={"enabled": True})

    # Then both are refused, naming every task Rollway does not run
    for answer in (started, enabled):
        assert answer.status_code == 409, answer.text
        message = answer.json()["error"]["message"]
        for task, kind in UNRUN:
            assert f"'Provision.{task}' is a {kind} task" in message
    assert "vRO" in started.json()["error"]["message"]
    # ... and its export gives the tasks back as they were written
    exported = api.http.get(f"/api/pipelines/{legacy['id']}/export").text
    assert "blueprintName: web-tier" in exported


def test_an_import_holding_half_a_surrogate_pair_is_refused_naming_where(api: ServedApp) -> None:
    # YAML reads "\ud800" in a double-quoted string as half of a UTF-16 pair: no database can store it
    text = 'name: "Release\\ud800"\nproject: shop\nstageOrder: [Build]\nstages: {Build: {taskOrder: [], tasks: {}}}\n'
    answer = api.http.post("/api/pipelines/import", content=text, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 400, answer.text
    assert "'documents[0].name'" in answer.json()["error"]["message"]
    assert api.http.get("/api/pipelines").json() == []
