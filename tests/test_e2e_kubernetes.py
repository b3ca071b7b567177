"""End to end on Kubernetes: pipelines created and run through the HTTP API, K8S tasks run by a real
`rollway worker` process against kubesim (the emulated cluster) over HTTP, checked with the official client
and with real kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kubesim import KubeSim

from rollway_testing import CI, TERMINAL, ServedApp, wait_until

Doc = dict[str, Any]
GOOD, NEXT, BROKEN = "nginx:1.25", "nginx:1.26", "nginx:no-such-tag"

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: NAME
  namespace: shop
spec:
  selector: {app: NAME}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
  namespace: shop
spec:
  replicas: REPLICAS
  progressDeadlineSeconds: 3
  selector: {matchLabels: {app: NAME}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      containers: [{name: NAME, image: "${input.image}", ports: [{containerPort: 8080}]}]
"""


def manifest(name: str, replicas: int = 2) -> str:
    return MANIFEST.replace("NAME", name).replace("REPLICAS", str(replicas))


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    """The dev cluster: images tagged no-such-tag cannot be pulled."""
    with KubeSim(unpullable=["*:no-such-tag"], ready_delay=0.2) as sim:
        yield sim


def k8s_task(action: str, **fields: Any) -> Doc:
    return {"type": "K8S", "endpoints": {"kubernetesServer": "dev-cluster"}, "input": {"action": action, **fields}}


def deploy_pipeline(name: str, deployment: str, rollback: str | None = None, replicas: int = 2) -> Doc:
    stage: Doc = {
        "taskOrder": ["Apply", "Verify"],
        "tasks": {
            "Apply": k8s_task("APPLY", yaml=manifest(deployment, replicas)),
            "Verify": k8s_task("VERIFY", namespace="shop", deployment=deployment, timeout=60),
        },
    }
    if rollback:
        stage["rollback"] = {"pipeline": rollback, "input": {"deployment": deployment}}
    return {
        "name": name,
        "project": "e2e",
        "enabled": True,
        "input": {"image": ""},
        "_inputMeta": {"image": {"mandatory": True, "description": "the image to deploy"}},
        "stageOrder": ["Dev"],
        "stages": {"Dev": stage},
    }


def rollback_pipeline(name: str) -> Doc:
    return {
        "name": name,
        "project": "e2e",
        "enabled": True,
        "input": {"deployment": ""},
        "stageOrder": ["Undo"],
        "stages": {
            "Undo": {
                "taskOrder": ["Roll Back", "Verify"],
                "tasks": {
                    "Roll Back": k8s_task("ROLLBACK", namespace="shop", deployment="${input.deployment}"),
                    "Verify": k8s_task("VERIFY", namespace="shop", deployment="${input.deployment}", timeout=60),
                },
            }
        },
    }


def run(api: ServedApp, pipeline: Doc, image: str) -> str:
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {"image": image}})
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def finished(api: ServedApp, execution_id: str) -> Doc:
    def ended() -> Doc | None:
        found: Doc = api.http.get(f"/api/executions/{execution_id}").json()
        return found if found["status"] in TERMINAL else None

    done: Doc = wait_until(ended, timeout=90, interval=0.2, what=f"execution {execution_id} to end")
    return done


def task(found: Doc, stage: str, name: str) -> Doc:
    stage_view = next(item for item in found["stages"] if item["name"] == stage)
    task_view: Doc = next(item for item in stage_view["tasks"] if item["name"] == name)
    return task_view


def apps(sim: KubeSim) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=sim.url)))


def image_of(sim: KubeSim, name: str) -> str:
    deployment = apps(sim).read_namespaced_deployment(name, "shop")
    return str(deployment.spec.template.spec.containers[0].image)


def kubectl(sim: KubeSim, folder: Path, *args: str) -> str:
    """Real kubectl against the emulator; skipped only where it is absent outside CI."""
    binary = os.environ.get("KUBESIM_KUBECTL") or shutil.which("kubectl")
    if binary is None:
        if CI:
            pytest.fail("kubectl is required under CI (Debian package kubernetes-client)")
        pytest.skip("kubectl is not installed")
    config = folder / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sim", "cluster": {"server": sim.url}}],
                "users": [{"name": "me", "user": {}}],
                "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "me"}}],
                "current-context": "sim",
            }
        )
    )
    done = subprocess.run(
        [binary, "--kubeconfig", str(config), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def add_endpoint(api: ServedApp, sim: KubeSim) -> Doc:
    """The emulated cluster as the Rollway endpoint dev-cluster."""
    return api.create_at("/api/endpoints", {"name": "dev-cluster", "project": "e2e", "url": sim.url, "insecure": True})


@pytest.fixture
def endpoint(api: ServedApp, cluster: KubeSim) -> Doc:
    return add_endpoint(api, cluster)


def test_a_release_that_cannot_start_rolls_the_deployment_back_to_the_last_good_one(
    api: ServedApp, worker: Any, cluster: KubeSim, endpoint: Doc, tmp_path: Path
) -> None:
    # Given a deploy pipeline whose stage is linked to a K8S rollback pipeline
    api.create(rollback_pipeline("Web_Rollback"))
    deploy = api.create(deploy_pipeline("Web", "web", rollback="Web_Rollback"))

    # When nginx:1.25 is released
    good = finished(api, run(api, deploy, GOOD))

    # Then it completes and the cluster serves it
    assert good["status"] == "COMPLETED", good
    assert task(good, "Dev", "Apply")["output"]["previousImage"] == ""
    assert image_of(cluster, "web") == GOOD

    # When an image the cluster cannot pull is released
    bad = finished(api, run(api, deploy, BROKEN))

    # Then VERIFY fails on the progress deadline, the stage's rollback runs, and the parent is ROLLBACK_COMPLETED
    assert bad["status"] == "ROLLBACK_COMPLETED", bad
    verify = task(bad, "Dev", "Verify")
    assert verify["status"] == "FAILED" and "progress deadline" in verify["statusMessage"]
    assert task(bad, "Dev", "Apply")["output"]["previousImage"] == GOOD
    rollback = api.http.get(f"/api/executions/{bad['rollbackExecutionId']}").json()
    assert rollback["status"] == "COMPLETED" and rollback["input"] == {"deployment": "web"}
    assert "task 'Verify' in stage 'Dev'" in rollback["comments"]
    # ... the Deployment serves nginx:1.25 again, as revision 3 (the rollback re-stamps revision 1)
    assert image_of(cluster, "web") == GOOD
    history = kubectl(cluster, tmp_path, "rollout", "history", "deployment/web", "-n", "shop")
    revisions = [line.split()[0] for line in history.splitlines() if line[:1].isdigit()]
    assert revisions == ["2", "3"], history
    assert GOOD in kubectl(cluster, tmp_path, "rollout", "history", "deployment/web", "-n", "shop", "--revision=3")
    assert BROKEN in kubectl(cluster, tmp_path, "rollout", "history", "deployment/web", "-n", "shop", "--revision=2")


@pytest.fixture
def slow_cluster() -> Iterator[KubeSim]:
    """A cluster whose pods take a second to become ready."""
    with KubeSim(ready_delay=1.0) as sim:
        yield sim


def test_a_worker_waiting_on_slow_rollouts_keeps_working(
    api: ServedApp, worker_factory: Any, slow_cluster: KubeSim
) -> None:
    # Given one worker process that runs one task at a time, and a cluster whose pods take a while to start
    worker_factory("-c", "1")
    add_endpoint(api, slow_cluster)
    first = api.create(deploy_pipeline("Slow A", "slow-a", replicas=3))
    second = api.create(deploy_pipeline("Slow B", "slow-b", replicas=3))

    # When both are released at once
    runs = [run(api, first, NEXT), run(api, second, NEXT)]
    ended = [finished(api, execution_id) for execution_id in runs]

    # Then both complete, each VERIFY waited over several attempts, and the two waits overlapped in time
    assert [item["status"] for item in ended] == ["COMPLETED", "COMPLETED"], ended
    verifies = [task(item, "Dev", "Verify") for item in ended]
    assert all(item["attempt"] > 1 for item in verifies), verifies
    (_, first_end), (second_start, _) = sorted((item["startedAt"], item["finishedAt"]) for item in verifies)
    assert second_start < first_end, verifies
