"""The smart CD template as pure functions: what a Kubernetes YAML holds, the request checks, and the pipelines each
deployment model generates (loaded with `load_pipeline`, their rollback links followed with the rollback policy,
and the rollback pipelines' preConditions evaluated as the engine would)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestrator import expressions
from orchestrator.bindings import Scope, resolve
from orchestrator.cdtemplate import GeneratedPipelines, generate, load_generated, process, read_request
from orchestrator.document import load_pipeline
from orchestrator.errors import BadRequest
from orchestrator.inputs import bind_task
from orchestrator.pipeline import Pipeline
from orchestrator.rollback import plan_rollback

from rollway_testing import template_request

Doc = dict[str, Any]
MODELS = ("rolling-upgrade", "blue-green", "canary")
ENDPOINTS = {"dev-cluster": "https://dev.example:6443", "prod-cluster": "https://prod.example:6443/"}

NAMESPACE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""
SECRET = """
apiVersion: v1
kind: Secret
metadata: {name: regcred, namespace: shop}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: e30=}
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
"""
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  progressDeadlineSeconds: 30
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      imagePullSecrets: [{name: regcred}]
      containers:
      - {name: web, image: "registry.example/web:1.0", ports: [{containerPort: 8080}]}
      - {name: proxy, image: "envoy:1.30"}
"""
CONFIG = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop}
data: {mode: fast}
"""


def manifest(*parts: str) -> str:
    return "---".join(parts)


APP = manifest(NAMESPACE, SECRET, SERVICE, DEPLOYMENT)


def body(**changes: Any) -> Doc:
    """A valid template request for the shop's web application, with `changes`."""
    return template_request(APP, **changes)


def generated(**changes: Any) -> GeneratedPipelines:
    return generate(read_request(body(**changes), lambda _project, name: ENDPOINTS.get(name)))


def loaded(result: GeneratedPipelines) -> dict[str, Pipeline]:
    """The generated pipelines as `load_pipeline` reads them (every endpoint exists), by name."""
    return {pipeline.name: pipeline for pipeline in load_generated(result, lambda _project, name: name in ENDPOINTS)}


def task_order(document: Doc, stage: str) -> list[str]:
    return [name for group in document["stages"][stage]["taskOrder"] for name in group.split(",")]


def objects(task: Doc) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(task["input"]["yaml"]) if doc]


def kinds_and_names(text: str) -> list[tuple[str, str]]:
    return [(obj["kind"], obj["metadata"]["name"]) for obj in yaml.safe_load_all(text) if obj]


def problems_of(request: Doc) -> list[tuple[str, str]]:
    with pytest.raises(BadRequest) as raised:
        read_request(request, lambda _project, name: ENDPOINTS.get(name))
    return [(problem.path, problem.message) for problem in raised.value.details]


def rollback_run(document: Doc, given: Doc) -> dict[str, Doc]:
    """The tasks a rollback pipeline runs on input `given` (preConditions evaluated), with their bound input."""
    pipeline = load_pipeline(document, None)
    scope = Scope(input={**pipeline.input, **given}, outputs={})
    return {
        task.name: dict(bind_task(task, scope).input)
        for _, _, task, _ in pipeline.ordered_tasks()
        if task.pre_condition is None or expressions.check(task.pre_condition, scope.lookup)
    }


# -- what a YAML holds


def test_process_names_the_namespaces_services_deployments_and_secrets_of_a_yaml() -> None:
    # Given the YAML of an application with a namespace, a registry secret, a service and a deployment
    # When it is processed
    found = process(manifest(NAMESPACE, SECRET, SERVICE, DEPLOYMENT, CONFIG))

    # Then each object is named with its namespace, the service with its ports and the deployment it selects
    assert found["namespaces"] == [{"name": "shop", "defined": True}]
    assert found["secrets"] == [{"name": "regcred", "namespace": "shop", "type": "kubernetes.io/dockerconfigjson"}]
    assert found["services"] == [
        {
            "name": "web",
            "namespace": "shop",
            "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "selector": {"app": "web"},
            "deployments": ["web"],
        }
    ]
    [deployment] = found["deployments"]
    assert deployment["name"] == "web" and deployment["namespace"] == "shop" and deployment["replicas"] == 3
    assert deployment["containers"][0] == {"name": "web", "image": "registry.example/web:1.0"}
    assert deployment["services"] == ["web"]
    assert found["otherObjects"] == [{"kind": "ConfigMap", "name": "web-config", "namespace": "shop"}]


def test_process_names_namespaces_the_yaml_uses_without_defining_them() -> None:
    # Given a YAML whose objects live in a namespace it does not create, and one without a namespace
    text = manifest(SERVICE, DEPLOYMENT.replace("namespace: shop", "namespace: other"))

    # When it is processed, Then both namespaces are listed as used but not defined
    assert process(text)["namespaces"] == [{"name": "other", "defined": False}, {"name": "shop", "defined": False}]
    # And the service, in another namespace than the deployment, selects none
    assert process(text)["services"][0]["deployments"] == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("kind: [unclosed", "is not valid YAML"),
        ("", "is required"),
        ("---\n", "holds no Kubernetes object"),
        ("just text", "must be a Kubernetes object"),
        ("apiVersion: v1\nkind: Service\nmetadata: {}", "must be a Kubernetes object"),
        (manifest(SERVICE, SERVICE), "defines Service 'web' in namespace 'shop' twice"),
    ],
)
def test_process_refuses_a_yaml_it_cannot_read(text: str, reason: str) -> None:
    # When a YAML that is not a list of Kubernetes objects is processed, Then the reason is given
    with pytest.raises(BadRequest) as raised:
        process(text)
    assert any(reason in problem.message for problem in raised.value.details), raised.value.details


# -- what every model generates


@pytest.mark.parametrize("model", MODELS)
def test_each_model_generates_a_disabled_pipeline_and_two_enabled_rollbacks_that_load(model: str) -> None:
    # When the template generates a model
    result = generated(deploymentModel=model)

    # Then the three documents load together, the rollbacks validated as the main pipeline's link targets
    pipelines = loaded(result)
    assert list(pipelines) == [
        "RollingUpgrade-Example_Dev_Rollback",
        "RollingUpgrade-Example_Prod_Rollback",
        "RollingUpgrade-Example",
    ]
    main = pipelines["RollingUpgrade-Example"]
    # And the main pipeline is disabled until reviewed, the rollbacks enabled; one release at a time
    assert main.enabled is False
    assert all(pipelines[name].enabled for name in list(pipelines)[:2])
    assert {pipeline.concurrency for pipeline in pipelines.values()} == {1}
    assert main.project == "shop" and main.stage_order == ("Development", "Production")
    # And the image comes from run-time inputs: image mandatory, tag defaulting to latest
    assert dict(main.input) == {"image": "", "tag": "latest"}
    assert main.mandatory_inputs() == ["image"]


@pytest.mark.parametrize("model", MODELS)
def test_every_released_deployment_runs_the_runtime_image_in_its_first_container_only(model: str) -> None:
    # When a model is generated
    main = generated(deploymentModel=model).main

    # Then every Deployment it applies runs ${input.image}:${input.tag}, and the sidecar keeps its image
    applied = [
        obj
        for stage in main["stages"].values()
        for task in stage["tasks"].values()
        if task["type"] == "K8S" and task["input"]["action"] == "APPLY"
        for obj in objects(task)
        if obj["kind"] == "Deployment"
    ]
    assert applied
    for deployment in applied:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [item["image"] for item in containers] == ["${input.image}:${input.tag}", "envoy:1.30"]
        assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize("model", MODELS)
def test_each_rollback_is_linked_from_its_stage_and_from_the_deploy_and_verify_tasks(model: str) -> None:
    # When a model is generated
    main = generated(deploymentModel=model).main

    for stage, rollback in (("Development", "_Dev_Rollback"), ("Production", "_Prod_Rollback")):
        tasks = main["stages"][stage]["tasks"]
        # Then the stage names its environment's rollback pipeline
        assert main["stages"][stage]["rollback"]["pipeline"] == "RollingUpgrade-Example" + rollback
        # And so does every task that deploys or verifies (K8S APPLY of a Deployment, VERIFY, health POLL)
        deploying = [
            name
            for name, task in tasks.items()
            if task["type"] == "POLL"
            or task["input"]["action"] == "VERIFY"
            or any(obj["kind"] == "Deployment" for obj in objects(task) if task["input"]["action"] == "APPLY")
        ]
        assert len(deploying) >= 3
        for name in deploying:
            assert tasks[name]["rollback"]["pipeline"] == "RollingUpgrade-Example" + rollback, name
        # And the tasks that prepare the environment rely on the stage's link
        for name in ("Create Namespace", "Create Service", "Create Secret"):
            assert "rollback" not in tasks[name]


@pytest.mark.parametrize("model", MODELS)
def test_without_rollback_nothing_links_to_a_rollback_pipeline(model: str) -> None:
    # When a model is generated with rollback off
    result = generated(deploymentModel=model, rollback=False)

    # Then there are no rollback pipelines, and no stage or task has a link
    assert result.rollbacks == []
    main = loaded(result)["RollingUpgrade-Example"]
    assert all(stage.rollback is None for stage in main.stages.values())
    assert all(task.rollback is None for _, _, task, _ in main.ordered_tasks())


@pytest.mark.parametrize("model", MODELS)
def test_the_health_check_polls_the_health_path_through_each_clusters_service_proxy(model: str) -> None:
    # When a model is generated
    main = generated(deploymentModel=model, healthCheckPollCount=5, healthCheckIntervalSeconds=0.5).main

    # Then every health check of a stage polls its own cluster's API (the path is resolved against the endpoint
    # it names, whose credentials go with it), through the Service's named port
    for stage, endpoint in (("Development", "dev-cluster"), ("Production", "prod-cluster")):
        tasks = [task for task in main["stages"][stage]["tasks"].values() if task["type"] == "POLL"]
        assert tasks
        assert all(task["endpoints"] == {"kubernetesServer": endpoint} for task in tasks)
        for poll in (task["input"] for task in tasks):
            assert poll["url"] in (
                "/api/v1/namespaces/shop/services/web:http/proxy/healthz",
                "/api/v1/namespaces/shop/services/web-preview:http/proxy/healthz",
            )
            assert poll["exitCriteria"] == {"success": "${responseCode} == 200"}
            assert (poll["pollCount"], poll["pollIntervalSeconds"]) == (5, 0.5)


@pytest.mark.parametrize("model", MODELS)
def test_secrets_namespaces_and_other_objects_get_tasks_only_when_the_yaml_has_them(model: str) -> None:
    # Given the same application without namespace and secret, then with a ConfigMap besides
    bare = generated(deploymentModel=model, kubernetesYaml=manifest(SERVICE, DEPLOYMENT)).main
    full = generated(
        deploymentModel=model, kubernetesYaml=manifest(NAMESPACE, SECRET, SERVICE, DEPLOYMENT, CONFIG)
    ).main

    # Then the bare one has no Create Namespace, Create Secret or Create Resources task
    for stage in ("Development", "Production"):
        assert not {"Create Namespace", "Create Secret", "Create Resources"} & set(task_order(bare, stage))
        # And the full one creates the namespace first, then the rest together with the Service
        order = full["stages"][stage]["taskOrder"]
        assert order[0] == "Create Namespace"
        assert {"Create Service", "Create Secret", "Create Resources"} <= set(order[1].split(","))
        configs = objects(full["stages"][stage]["tasks"]["Create Resources"])
        assert [obj["metadata"]["name"] for obj in configs] == ["web-config"]


# -- rolling upgrade: the seed scenario


def test_rolling_upgrade_has_the_seed_scenarios_tasks_in_order() -> None:
    # When the rolling upgrade is generated
    main = generated().main

    # Then Development creates and verifies, and Production goes in two verified phases
    assert main["stages"]["Development"]["taskOrder"] == [
        "Create Namespace",
        "Create Service,Create Secret",
        "Create Deployment",
        "Verify Deployment",
        "Check Health",
    ]
    assert task_order(main, "Production") == [
        "Create Namespace",
        "Create Service",
        "Create Secret",
        "Create Deployment",
        "Deploy Phase 1",
        "Verify Phase 1",
        "Check Phase 1 Health",
        "Deploy Rollout Phase",
        "Finish Rollout Phase",
        "Verify Rollout Phase",
        "Check Rollout Health",
    ]
    dev = main["stages"]["Development"]["tasks"]
    assert dev["Create Deployment"]["input"]["action"] == "APPLY"
    assert dev["Create Deployment"]["endpoints"] == {"kubernetesServer": "dev-cluster"}
    assert dev["Verify Deployment"]["input"] == {
        "action": "VERIFY",
        "namespace": "shop",
        "deployment": "web",
        "timeout": 90,  # the deployment's progress deadline, and a margin
        # The revision the release made: a rollout of an older one never passes for it
        "revision": "${Development.Create Deployment.output.revision}",
    }
    prod = main["stages"]["Production"]["tasks"]
    assert prod["Verify Phase 1"]["input"]["revision"] == "${Production.Deploy Phase 1.output.revision}"
    assert prod["Verify Rollout Phase"]["input"]["revision"] == "${Production.Deploy Rollout Phase.output.revision}"


def test_rolling_upgrades_phase_1_is_one_replica_that_the_service_sends_traffic_to() -> None:
    # When the rolling upgrade is generated
    prod = generated().main["stages"]["Production"]["tasks"]

    # Then phase 1 is a Deployment of its own, one replica, whose pods the Service selects
    [phase_1] = objects(prod["Deploy Phase 1"])
    assert phase_1["metadata"]["name"] == "web-phase1" and phase_1["spec"]["replicas"] == 1
    labels = phase_1["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "web", "tier": "front", "rollway-track": "phase1"}
    # And it selects only its own pods, not the release's
    assert phase_1["spec"]["selector"]["matchLabels"] == {"app": "web", "rollway-track": "phase1"}
    # And the rollout applies the Deployment itself, then removes phase 1
    assert [obj["metadata"]["name"] for obj in objects(prod["Deploy Rollout Phase"])] == ["web"]
    assert prod["Finish Rollout Phase"]["input"]["action"] == "DELETE"
    assert [obj["metadata"]["name"] for obj in objects(prod["Finish Rollout Phase"])] == ["web-phase1"]


def test_a_failed_dev_verification_rolls_back_with_what_create_deployment_recorded() -> None:
    # Given the rolling upgrade, and a run whose Create Deployment recorded the release it replaced
    main = loaded(generated())["RollingUpgrade-Example"]
    recorded = {"previousImage": "registry.example/web:1.0", "previousRevision": "4", "revision": "5"}
    scope = Scope(input={"image": "web", "tag": "2.0"}, outputs={("Development", "Create Deployment"): recorded})

    # When Verify Deployment fails
    plan = plan_rollback(main, ("Development", "Verify Deployment"), "ProgressDeadlineExceeded", scope)

    # Then the Dev rollback starts with the previous image and revisions
    assert plan is not None
    assert plan.pipeline == "RollingUpgrade-Example_Dev_Rollback"
    assert plan.input == recorded


def test_a_failure_in_production_phase_1_binds_nothing_of_the_rollout_it_never_reached() -> None:
    # Given the rolling upgrade, run until phase 1 in Production
    main = loaded(generated())["RollingUpgrade-Example"]
    scope = Scope(input={}, outputs={("Development", "Create Deployment"): {"previousRevision": "4", "revision": "5"}})

    # When Verify Phase 1 fails, Then the Prod rollback starts knowing only whether the run created the Deployment
    plan = plan_rollback(main, ("Production", "Verify Phase 1"), "failed", scope)
    assert plan is not None and plan.pipeline == "RollingUpgrade-Example_Prod_Rollback"
    assert plan.input == {"createdRevision": ""}
    # And after the rollout phase, its link binds what Deploy Rollout Phase recorded
    rollout = main.stages["Production"].tasks["Verify Rollout Phase"].rollback
    assert rollout is not None
    assert rollout.input["previousRevision"] == "${Production.Deploy Rollout Phase.output.previousRevision}"


def test_the_rolling_rollback_undoes_to_the_previous_revision_removes_a_first_release_or_does_nothing() -> None:
    # Given the rolling upgrade's rollback pipelines
    result = generated()
    dev, prod = result.dev_rollback, result.prod_rollback
    assert dev is not None and prod is not None

    # When the Deployment had revision 4 before the release made revision 5
    run = rollback_run(dev, {"previousImage": "web:1.0", "previousRevision": "4", "revision": "5"})
    # Then it is rolled back to revision 4, and verified
    assert list(run) == ["Roll Back Deployment", "Verify Rollback"]
    assert run["Roll Back Deployment"] == {
        "action": "ROLLBACK",
        "namespace": "shop",
        "deployment": "web",
        "revision": "4",
    }

    # When the release created the Deployment (a first release)
    run = rollback_run(dev, {"previousImage": "", "previousRevision": "", "revision": "1"})
    # Then what the release created is removed, namespaces aside
    assert list(run) == ["Remove Application"]
    created = [("Deployment", "web"), ("Service", "web"), ("Secret", "regcred")]
    assert kinds_and_names(run["Remove Application"]["yaml"]) == created

    # When the release failed before reaching the Deployment, Then nothing is touched in Dev
    assert rollback_run(dev, {}) == {}
    # And Production only removes phase 1
    assert list(rollback_run(prod, {})) == ["Remove Phase 1"]
    assert list(rollback_run(prod, {"previousRevision": "4", "revision": "5"})) == [
        "Remove Phase 1",
        "Roll Back Deployment",
        "Verify Rollback",
    ]


# -- blue-green


def test_blue_green_deploys_a_release_beside_the_live_one_and_switches_the_service_once_verified() -> None:
    # When blue-green is generated
    main = generated(deploymentModel="blue-green").main

    # Then each stage reads the live release, deploys and verifies the new one, then switches and removes the old
    for stage in ("Development", "Production"):
        assert main["stages"][stage]["taskOrder"] == [
            "Create Namespace",
            "Create Service,Create Preview Service,Create Secret",
            "Read Service",
            "Create Deployment",
            "Verify Deployment",
            "Check Preview Health",
            "Switch Traffic",
            "Check Health",
            "Remove Old Release",
        ]
    tasks = main["stages"]["Development"]["tasks"]
    # And the release is named by execution, its pods labelled with it
    [release] = objects(tasks["Create Deployment"])
    assert release["metadata"]["name"] == "web-r${executionIndex}"
    assert release["spec"]["selector"]["matchLabels"] == {"app": "web", "rollway-release": "r${executionIndex}"}
    # And a new Service selects no release yet; an existing one is left as it is
    assert tasks["Create Service"]["input"]["action"] == "CREATE"
    assert tasks["Create Service"]["input"]["continueOnConflict"] is True
    assert objects(tasks["Create Service"])[0]["spec"]["selector"] == {"app": "web", "rollway-release": "none"}
    # And the preview Service is a ClusterIP copy selecting the new release
    [preview] = objects(tasks["Create Preview Service"])
    assert preview["metadata"]["name"] == "web-preview"
    assert preview["spec"] == {
        "type": "ClusterIP",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        "selector": {"app": "web", "rollway-release": "r${executionIndex}"},
    }
    # And the switch selects the new release
    [switched] = objects(tasks["Switch Traffic"])
    assert switched["spec"]["selector"] == {"app": "web", "rollway-release": "r${executionIndex}"}


def test_blue_green_removes_the_old_release_only_when_there_was_one_and_never_rolls_back_for_it() -> None:
    # Given blue-green's Remove Old Release
    task = loaded(generated(deploymentModel="blue-green"))["RollingUpgrade-Example"].stages["Development"].tasks
    remove = task["Remove Old Release"]
    live = "Development.Read Service.output.response.services.web.spec.selector.rollway-release"

    def runs(selector: Doc) -> bool:
        scope = Scope(
            input={}, outputs={("Development", "Read Service"): {"response": {"services": {"web": selector}}}}
        )
        assert remove.pre_condition is not None
        return expressions.check(remove.pre_condition, scope.lookup)

    # Then it runs when a release was live, and not on a first release
    assert runs({"spec": {"selector": {"app": "web", "rollway-release": "r3"}}})
    assert not runs({"spec": {"selector": {"app": "web", "rollway-release": "none"}}})
    assert f"${{{live}}}" in remove.input["yaml"]
    # And a failed clean-up does not roll back a release that is live and verified
    assert remove.ignore_failure and remove.rollback is None


def test_the_blue_green_rollback_switches_back_and_removes_the_failed_release() -> None:
    # Given blue-green's Dev rollback, and a run #7 that failed after release r6 was live
    result = generated(deploymentModel="blue-green")
    main = loaded(result)["RollingUpgrade-Example"]
    service = {"response": {"services": {"web": {"spec": {"selector": {"rollway-release": "r6"}}}}}}
    scope = Scope(input={}, outputs={("Development", "Read Service"): service}, execution_index=7)
    plan = plan_rollback(main, ("Development", "Check Health"), "503", scope)
    assert plan is not None and plan.input == {"release": "r7", "previousRelease": "r6"}
    assert result.dev_rollback is not None

    # When the rollback runs on what the link bound
    run = rollback_run(result.dev_rollback, plan.input)

    # Then the Service selects r6 again, r6 is verified, and r7 removed
    assert list(run) == ["Switch Traffic Back", "Verify Rollback", "Remove Failed Release"]
    assert yaml.safe_load(run["Switch Traffic Back"]["yaml"])["spec"]["selector"]["rollway-release"] == "r6"
    assert run["Verify Rollback"]["deployment"] == "web-r6"
    assert yaml.safe_load(run["Remove Failed Release"]["yaml"])["metadata"]["name"] == "web-r7"

    # When the failed run was the first release, Then all it created is removed
    first = rollback_run(result.dev_rollback, {"release": "r1", "previousRelease": "none"})
    assert list(first) == ["Remove Failed Release", "Remove Application"]
    removed = [
        (obj["kind"], obj["metadata"]["name"]) for obj in yaml.safe_load_all(first["Remove Application"]["yaml"])
    ]
    assert removed == [("Service", "web-preview"), ("Service", "web"), ("Secret", "regcred")]

    # When the run failed before it read the live release, Then only its own release goes
    assert list(rollback_run(result.dev_rollback, {"release": "r8", "previousRelease": ""})) == [
        "Remove Failed Release"
    ]


# -- canary


def test_canary_takes_a_share_of_traffic_in_two_verified_steps_then_is_promoted_and_removed() -> None:
    # When canary is generated for a Deployment of 3 replicas
    main = generated(deploymentModel="canary").main

    # Then each stage scales a canary in two verified phases, promotes it and removes it
    assert task_order(main, "Production")[3:] == [
        "Create Deployment",
        "Deploy Canary Phase 1",
        "Verify Canary Phase 1",
        "Check Canary Phase 1 Health",
        "Deploy Canary Phase 2",
        "Verify Canary Phase 2",
        "Check Canary Phase 2 Health",
        "Promote Canary",
        "Verify Promotion",
        "Remove Canary",
        "Check Health",
    ]
    tasks = main["stages"]["Development"]["tasks"]
    first, second = objects(tasks["Deploy Canary Phase 1"])[0], objects(tasks["Deploy Canary Phase 2"])[0]
    assert (first["metadata"]["name"], first["spec"]["replicas"]) == ("web-canary", 1)
    assert (second["metadata"]["name"], second["spec"]["replicas"]) == ("web-canary", 3)
    # And the canary's pods carry the Service's labels, so it takes traffic
    assert first["spec"]["template"]["metadata"]["labels"]["app"] == "web"
    assert tasks["Verify Canary Phase 2"]["input"]["deployment"] == "web-canary"
    assert [obj["metadata"]["name"] for obj in objects(tasks["Promote Canary"])] == ["web"]


def test_the_canary_rollback_removes_the_canary_and_rolls_back_only_after_promotion() -> None:
    # Given canary's Prod rollback and the main pipeline
    result = generated(deploymentModel="canary")
    main = loaded(result)["RollingUpgrade-Example"]
    assert result.prod_rollback is not None

    # When a canary phase fails, the Deployment having existed (Create Deployment found it: no revision recorded)
    existed = {("Production", "Create Deployment"): {"response": {}}}
    plan = plan_rollback(main, ("Production", "Check Canary Phase 2 Health"), "503", Scope(input={}, outputs=existed))
    # Then the link binds nothing of the promotion, and only the canary goes
    assert plan is not None and plan.input == {"createdRevision": ""}
    assert list(rollback_run(result.prod_rollback, plan.input)) == ["Remove Canary"]

    # When the health check fails after the promotion, Then the Deployment is rolled back too
    recorded = {"previousImage": "web:1.0", "previousRevision": "2", "revision": "3"}
    scope = Scope(input={}, outputs={**existed, ("Production", "Promote Canary"): recorded})
    plan = plan_rollback(main, ("Production", "Check Health"), "503", scope)
    assert plan is not None and plan.input == recorded | {"createdRevision": ""}
    run = rollback_run(result.prod_rollback, plan.input)
    assert list(run) == ["Remove Canary", "Roll Back Deployment", "Verify Rollback"]
    assert run["Roll Back Deployment"]["revision"] == "2"


@pytest.mark.parametrize(
    ("model", "failed", "first_goes"),
    [
        ("canary", "Verify Canary Phase 1", "Remove Canary"),
        ("rolling-upgrade", "Check Phase 1 Health", "Remove Phase 1"),
    ],
)
def test_a_first_release_failing_before_its_deployment_is_promoted_removes_all_it_created(
    model: str, failed: str, first_goes: str
) -> None:
    # Given a model that changes the Deployment late in the stage, whose Create Deployment made it (a first release)
    result = generated(deploymentModel=model)
    main = loaded(result)["RollingUpgrade-Example"]
    created = {"previousImage": "", "previousRevision": "", "revision": "1", "image": "web:2.0"}
    scope = Scope(input={}, outputs={("Production", "Create Deployment"): created})
    assert result.prod_rollback is not None

    # When a task before the promotion fails
    plan = plan_rollback(main, ("Production", failed), "ProgressDeadlineExceeded", scope)
    assert plan is not None and plan.input == {"createdRevision": "1"}
    run = rollback_run(result.prod_rollback, plan.input)

    # Then the canary or phase 1 goes, and so does everything the release created, with nothing rolled back
    assert list(run) == [first_goes, "Remove Application"]
    created_objects = [("Deployment", "web"), ("Service", "web"), ("Secret", "regcred")]
    assert kinds_and_names(run["Remove Application"]["yaml"]) == created_objects

    # When the same failure comes after the promotion on a first release, Then it is the same removal
    promoted = {"previousImage": "web:2.0", "previousRevision": "1", "revision": "1"}
    assert list(rollback_run(result.prod_rollback, promoted | {"createdRevision": "1"})) == [
        first_goes,
        "Remove Application",
    ]


def test_create_deployment_creates_only_a_missing_deployment() -> None:
    # When canary is generated, Then Create Deployment is a CREATE that leaves an existing Deployment as it is
    task = generated(deploymentModel="canary").main["stages"]["Development"]["tasks"]["Create Deployment"]
    assert task["input"]["action"] == "CREATE" and task["input"]["continueOnConflict"] is True
    assert [obj["metadata"]["name"] for obj in objects(task)] == ["web"]


def test_a_single_replica_canary_still_grows_in_its_second_phase() -> None:
    # Given a Deployment of one replica
    text = manifest(SERVICE, DEPLOYMENT.replace("replicas: 3", "replicas: 1"))

    # When canary is generated, Then phase 2 runs two canary replicas
    tasks = generated(deploymentModel="canary", kubernetesYaml=text).main["stages"]["Development"]["tasks"]
    assert objects(tasks["Deploy Canary Phase 2"])[0]["spec"]["replicas"] == 2


# -- what the bindings resolve to at run time


def test_the_runtime_image_and_release_resolve_into_valid_kubernetes_yaml() -> None:
    # Given blue-green's Create Deployment, and an execution #12 releasing web:2.0
    main = loaded(generated(deploymentModel="blue-green"))["RollingUpgrade-Example"]
    task = main.stages["Production"].tasks["Create Deployment"]
    scope = Scope(input={"image": "registry.example/web", "tag": "2.0"}, outputs={}, execution_index=12)

    # When its input is bound
    text = resolve(task.input["yaml"], scope.lookup)

    # Then the YAML names release r12 and runs the image given
    assert isinstance(text, str)
    deployment = yaml.safe_load(text)
    assert deployment["metadata"]["name"] == "web-r12"
    assert deployment["spec"]["template"]["metadata"]["labels"]["rollway-release"] == "r12"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:2.0"


# -- invalid requests


@pytest.mark.parametrize(
    ("changes", "path", "reason"),
    [
        ({"kubernetesYaml": manifest(SERVICE, CONFIG)}, "kubernetesYaml", "holds no Deployment"),
        ({"kubernetesYaml": "kind: [unclosed"}, "kubernetesYaml", "is not valid YAML"),
        ({"service": "shop"}, "service", "'shop' is not a Service of the YAML (its Services: web)"),
        (
            {"kubernetesYaml": manifest(SERVICE, DEPLOYMENT.replace("app: web", "app: other"))},
            "service",
            "Service 'web' selects no Deployment of the YAML (its selector: app=web)",
        ),
        (
            {"kubernetesYaml": manifest(SERVICE, DEPLOYMENT, DEPLOYMENT.replace("name: web,", "name: web2,"))},
            "service",
            "selects more than one Deployment (web, web2)",
        ),
        (
            {"environments": {"dev": {"endpoint": "dev-cluster"}, "prod": {"endpoint": "staging"}}},
            "environments.prod.endpoint",
            "endpoint 'staging' does not exist in project 'shop'",
        ),
        ({"environments": {"prod": {"endpoint": "prod-cluster"}}}, "environments.dev", "is required"),
        ({"environments": {"dev": {}, "prod": {"endpoint": "prod-cluster"}}}, "environments.dev.endpoint", "required"),
        ({"deploymentModel": "big-bang"}, "deploymentModel", "must be one of rolling-upgrade, blue-green, canary"),
        ({"imageSource": "docker-hub"}, "imageSource", "must be one of runtime-input"),
        ({"healthCheckUrl": "web/healthz"}, "healthCheckUrl", "must be the application's health path"),
        ({"healthCheckUrl": "ftp://web/healthz"}, "healthCheckUrl", "or an absolute http:// or https:// URL"),
        ({"healthCheckUrl": "//web/healthz"}, "healthCheckUrl", "must be the application's health path"),
        ({"pipelineName": "Web.Release"}, "pipelineName", "must not contain '.'"),
        ({"rollback": "yes"}, "rollback", "must be true or false"),
        ({"healthCheckPollCount": 0}, "healthCheckPollCount", "must be a whole number from 1 to 1000"),
        ({"colour": "blue"}, "colour", "is not a field of a template request"),
    ],
)
def test_an_invalid_request_names_its_problem(changes: Doc, path: str, reason: str) -> None:
    # When a request with one problem is read, Then that problem is given with its field
    found = problems_of(body(**changes))
    assert any(where == path and reason in message for where, message in found), found


@pytest.mark.parametrize(
    "field", ["pipelineName", "kubernetesYaml", "service", "environments", "deploymentModel", "healthCheckUrl"]
)
def test_a_request_missing_a_field_says_it_is_required(field: str) -> None:
    # When a request lacks a required field, Then it is named as required
    request = body()
    del request[field]
    found = problems_of(request)
    assert any(where == field and "required" in message for where, message in found), found


def test_every_problem_of_a_request_is_reported_at_once() -> None:
    # When a request has several problems, Then each is reported
    found = problems_of(body(service="api", deploymentModel="big-bang", healthCheckUrl="", pipelineName=None))
    assert {where for where, _ in found} == {"service", "deploymentModel", "healthCheckUrl", "pipelineName"}


def test_an_endpoint_known_only_by_a_kubeconfig_cannot_carry_the_health_check() -> None:
    # Given an endpoint without an API URL
    def lookup(_project: str, name: str) -> str | None:
        return "" if name == "dev-cluster" else ENDPOINTS.get(name)

    # When it is named, Then the request says why it cannot be used
    with pytest.raises(BadRequest) as raised:
        read_request(body(), lookup)
    assert [problem.path for problem in raised.value.details] == ["environments.dev.endpoint"]
    assert "has no API URL" in raised.value.details[0].message
