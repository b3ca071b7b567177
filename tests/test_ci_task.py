"""The CI task: its steps run in the pipeline workspace's image as a Kubernetes Job on kubesim, seen through the
official client's BatchV1Api; exports bound by a later task, a failing Job failing the task and running the stage's
rollback, a repeated attempt finding the Job it made, and secrets kept out of the Job and the task's output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from k8s_support import endpoint, lookup
from kubernetes import client as k8s

from kubesim import KubeSim
from orchestrator.cijob import LABEL_RUN, MAX_NAME, RunNames, job_name, label_value, read_log
from workers.executors.base import Succeeded, TaskCall, Waiting
from workers.executors.ci import CiExecutor

from rollway_testing import ServedApp, ended, task_of

Doc = dict[str, Any]
PROJECT = "ci"
GOOD, BROKEN = "builder:1", "builder:broken"


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    """The build cluster: Job commands on builder:broken exit 1; the commands it cannot run would set COMMIT."""
    with KubeSim(ready_delay=0.1, failing=[BROKEN]) as sim:
        sim.set_commands(variables={"COMMIT": "4f2a9c1"})
        yield sim


def batch(sim: KubeSim) -> k8s.BatchV1Api:
    return k8s.BatchV1Api(k8s.ApiClient(k8s.Configuration(host=sim.url)))


def core(sim: KubeSim) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=sim.url)))


def workspace(image: str = GOOD) -> Doc:
    return {
        "type": "K8S",
        "endpoint": "build-cluster",
        "image": image,
        "path": "/src",
        "limits": {"cpu": 1, "memory": 512},
    }


def ci_input(*steps: str, export: list[str] | None = None) -> Doc:
    return {"steps": list(steps), "export": export or [], "artifacts": ["dist/app.tar.gz"], "process": []}


# --- the executor against kubesim, attempt by attempt ---


def call(sim_input: Doc, run_id: str, state: Any = None, attempt: int = 1) -> TaskCall:
    given = {**sim_input, "workspace": workspace()}
    return TaskCall(
        "CI",
        given,
        attempt=attempt,
        state=state or {},
        endpoints={"workspace": "build"},
        run_id=run_id,
        execution_id="e-1",
        pipeline="Shop Build",
        stage="Build",
        task="Compile",
    )


def test_a_lost_attempt_finds_the_job_it_made_instead_of_making_a_second(cluster: KubeSim) -> None:
    # Given the executor and a CI task's first attempt, which creates the Job and waits for it
    executor = CiExecutor(lookup(endpoint(cluster.url, name="build", token=None, insecure=True)), interval=0.05)
    task = ci_input("echo compiling", "export VERSION=2.0", export=["VERSION", "COMMIT"])
    first = executor.execute(call(task, "run-17"))
    assert isinstance(first, Waiting), first

    # When the attempt is lost with everything it kept, and the run is attempted again until it ends
    outcome = first
    attempt = 2
    while isinstance(outcome, Waiting):
        outcome = executor.execute(call(task, "run-17", attempt=attempt))
        attempt += 1

    # Then there is one Job for the run, labelled with it, and the task succeeded with its exports and logs
    jobs = batch(cluster).list_namespaced_job("default", label_selector=f"{LABEL_RUN}=run-17").items
    assert [job.metadata.name for job in jobs] == [job_name(RunNames("run-17", stage="Build", task="Compile"))]
    assert isinstance(outcome, Succeeded), outcome
    assert outcome.output["exports"] == {"VERSION": "2.0", "COMMIT": "4f2a9c1"}
    assert outcome.output["logs"] == "compiling"
    assert outcome.output["artifacts"] == ["dist/app.tar.gz"]
    assert outcome.output["jobName"] == jobs[0].metadata.name
    # ... its labels name the pipeline, execution and task, and the workspace's path and limits are the container's
    assert jobs[0].metadata.labels["rollway.io/pipeline"] == "Shop-Build"
    container = jobs[0].spec.template.spec.containers[0]
    assert (container.image, container.working_dir) == (GOOD, "/src")
    assert container.resources.limits == {"cpu": "1", "memory": "512Mi"}

    # When another run of the same task runs, Then it gets a Job of its own
    other = executor.execute(call(task, "run-18"))
    assert isinstance(other, Waiting)
    assert len(batch(cluster).list_namespaced_job("default").items) == 2


def test_job_names_are_bounded_dns_labels_and_exports_come_from_marked_lines() -> None:
    # Given names no DNS label could hold
    names = RunNames("r" * 40, stage="Build & Test " * 10, task="Ünit Tests")

    # Then the Job's name is still a DNS-1123 label of at most 63 characters, and stable for the run
    name = job_name(names)
    assert len(name) <= MAX_NAME and name == job_name(names)
    assert name.replace("-", "").isalnum() and name == name.lower() and not name.endswith("-")
    assert label_value("Shop Build / prod") == "Shop-Build-prod"
    # ... and a log's marked lines become exports, the rest its tail
    printed = read_log("a\n::rollway-export::V=1=2\nb\n", ["V", "MISSING"])
    assert printed.exports == {"V": "1=2", "MISSING": ""} and printed.tail == "a\nb"


# --- pipelines run by a real worker ---


def add_endpoint(api: ServedApp, sim: KubeSim) -> None:
    api.create_at("/api/endpoints", {"name": "build-cluster", "project": PROJECT, "url": sim.url, "insecure": True})


def build_pipeline(name: str, image: str, rollback: str | None = None) -> Doc:
    steps = ["echo building ${input.version}", "export VERSION=${input.version}", "echo token ${var.pushToken}"]
    stage: Doc = {
        "taskOrder": ["Compile", "Check"],
        "tasks": {
            "Compile": {"type": "CI", "input": ci_input(*steps, "make dist", export=["VERSION", "COMMIT"])},
            "Check": {
                "type": "Condition",
                "input": {"condition": "${Build.Compile.output.exports.COMMIT} == '4f2a9c1'"},
            },
        },
    }
    if rollback:
        stage["rollback"] = {"pipeline": rollback, "input": {"job": "${Build.Compile.output.jobName}"}}
    return {
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "input": {"version": "1.0"},
        "output": {"version": "${Build.Compile.output.exports.VERSION}"},
        "workspace": {**workspace(image), "namespace": "builds"},
        "stageOrder": ["Build"],
        "stages": {"Build": stage},
    }


def rollback_pipeline(name: str) -> Doc:
    task = {"type": "CI", "input": ci_input("echo cleaning up after ${input.job}")}
    return {
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "input": {"job": ""},
        "workspace": workspace(),
        "stageOrder": ["Clean"],
        "stages": {"Clean": {"taskOrder": ["Clean Up"], "tasks": {"Clean Up": task}}},
    }


def start(api: ServedApp, pipeline: Doc, version: str) -> Doc:
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {"version": version}})
    assert answer.status_code == 202, answer.text
    return ended(api, answer.json()["executionId"])


@pytest.fixture
def prepared(api: ServedApp, cluster: KubeSim) -> None:
    add_endpoint(api, cluster)
    api.create_at("/api/variables", {"name": "pushToken", "project": PROJECT, "type": "SECRET", "value": "tk-9f8e7d"})
    core(cluster).create_namespace({"metadata": {"name": "builds"}})


def test_a_build_exports_values_that_later_tasks_and_the_output_bind(
    api: ServedApp, cluster: KubeSim, prepared: None, worker: Any
) -> None:
    # Given a pipeline whose CI task builds and exports VERSION (set by a step) and COMMIT (set by a command)
    pipeline = api.create(build_pipeline("Shop Build", GOOD))

    # When it runs twice
    first, second = start(api, pipeline, "1.4.2"), start(api, pipeline, "1.4.3")

    # Then both complete: the later Condition read COMMIT, the pipeline's output is the exported VERSION
    assert first["status"] == "COMPLETED", first["statusMessage"]
    assert (first["output"], second["output"]) == ({"version": "1.4.2"}, {"version": "1.4.3"})
    compile_task = task_of(first, "Build", "Compile")
    assert compile_task["output"]["exports"] == {"VERSION": "1.4.2", "COMMIT": "4f2a9c1"}
    # ... each run had its own Job in the workspace's namespace
    jobs = batch(cluster).list_namespaced_job("builds", label_selector="app.kubernetes.io/managed-by=rollway").items
    assert len(jobs) == 2
    assert {job.metadata.labels["rollway.io/execution"] for job in jobs} == {first["id"], second["id"]}
    # ... and the secret bound into the steps is neither in any Job nor in the task's output and logs
    assert "tk-9f8e7d" not in json.dumps([job.to_dict() for job in jobs], default=str)
    assert "building 1.4.2" in compile_task["output"]["logs"]
    assert "token *****" in compile_task["output"]["logs"]
    assert "tk-9f8e7d" not in json.dumps(compile_task)


def test_a_failing_build_fails_its_task_naming_the_job_and_the_stage_rollback_runs(
    api: ServedApp, cluster: KubeSim, prepared: None, worker: Any
) -> None:
    # Given a build on an image whose commands fail, linked to a rollback pipeline that is itself a CI task
    api.create(rollback_pipeline("Shop Build Rollback"))
    pipeline = api.create(build_pipeline("Shop Build", BROKEN, rollback="Shop Build Rollback"))

    # When it runs
    done = start(api, pipeline, "1.5.0")

    # Then the CI task failed naming its Job, the pod's exit and the log's tail, and the rollback completed
    assert done["status"] == "ROLLBACK_COMPLETED", done["statusMessage"]
    failed = task_of(done, "Build", "Compile")
    job = failed["output"]["jobName"]
    assert failed["status"] == "FAILED"
    message = failed["statusMessage"]
    assert f"CI job builds/{job} failed (BackoffLimitExceeded" in message, message
    assert "exited 1 Error" in message and "building 1.5.0" in message and "make exited 1" in message
    assert "tk-9f8e7d" not in message
    (rollback,) = api.http.get("/api/executions", params={"rollback": "true"}).json()
    rolled = ended(api, rollback["id"])
    assert rolled["status"] == "COMPLETED", rolled["statusMessage"]
    assert task_of(rolled, "Clean", "Clean Up")["output"]["logs"] == f"cleaning up after {job}"
