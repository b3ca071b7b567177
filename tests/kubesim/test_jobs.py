"""Jobs (batch/v1): the Job controller runs a Job's pods to completion and writes Kubernetes' conditions and counts;
what a pod printed is kubesim's transcript of its command (kubesim runs no program), and whether it succeeds is
the `/kubesim/commands` knob. Driven by the official client's BatchV1Api and by real kubectl."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from test_kubesim_kubectl import Kubectl, find_kubectl

from kubesim import KubeSim

from kubesim_support import http, wait_until

SCRIPT = """set -e
echo "building $APP version ${VERSION}"
export STAGE=test
make test
printf '%s\\n' "stage=$STAGE" "commit=$COMMIT"
"""


JOB_MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: batch/v1
kind: Job
metadata:
  name: hello
  namespace: demo
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: hello
        image: busybox:1.36
        command: [/bin/sh, -c, echo hello from kubesim]
"""


def job(name: str, image: str = "builder:1", script: str = SCRIPT, **spec: Any) -> dict[str, Any]:
    container = {"name": "steps", "image": image, "command": ["/bin/sh", "-c", script]}
    container["env"] = [{"name": "APP", "value": "shop"}, {"name": "VERSION", "value": "1.4"}]
    template = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": template, **spec}}


@pytest.fixture
def batch(api: ApiClient) -> BatchV1Api:
    return BatchV1Api(api)


def ended(batch: BatchV1Api, name: str, namespace: str) -> Any:
    def done() -> Any:
        found = batch.read_namespaced_job(name, namespace)
        return found if found.status.conditions else None

    return wait_until(done, timeout=30)


def test_a_job_runs_one_pod_to_completion_and_logs_what_its_echo_lines_print(
    sim: KubeSim, batch: BatchV1Api, core: CoreV1Api, namespace: str
) -> None:
    # Given what the commands kubesim cannot run would set
    sim.set_commands(variables={"COMMIT": "abc123"})

    # When a Job is created
    created = batch.create_namespaced_job(namespace, job("build"))
    done = ended(batch, "build", namespace)

    # Then the API server gave it a selector on its uid, its pod is labelled job-name and owned by it
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"controller-uid": uid}
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=build").items
    assert pod.metadata.owner_references[0].kind == "Job" and pod.metadata.owner_references[0].uid == uid
    # ... it Succeeded, and the Job is Complete with one success, as Kubernetes writes it
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert [(c.type, c.status) for c in done.status.conditions] == [("Complete", "True")]
    assert (done.status.succeeded, done.status.failed, done.status.active) == (1, None, None)
    assert done.status.completion_time is not None
    # ... and its log is what the echo and printf lines print, with the knob's values for what commands set
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert log == "building shop version 1.4\nstage=test\ncommit=abc123\n"


def test_a_job_on_a_failing_image_fails_past_its_backoff_limit(
    sim: KubeSim, batch: BatchV1Api, core: CoreV1Api, namespace: str
) -> None:
    # Given images matching builder:broken* fail their commands, set through the admin route
    code, knob = http("POST", f"{sim.url}/kubesim/commands", {"failing": ["builder:broken*"]})
    assert code == 200 and knob["failing"] == ["builder:broken*"]

    # When a Job runs on one
    batch.create_namespaced_job(namespace, job("build", image="builder:broken-1"))
    done = ended(batch, "build", namespace)

    # Then its pod Failed with exit code 1 at the first command kubesim does not run, and the Job is Failed
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=build").items
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (1, "Error")
    (condition,) = done.status.conditions
    assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
    assert done.status.failed == 1 and done.status.succeeded is None
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert log.splitlines() == ["building shop version 1.4", "kubesim: make exited 1 (its image is set to fail)"]


def test_a_pod_reads_its_environment_from_a_secret_and_retries_up_to_the_backoff_limit(
    sim: KubeSim, batch: BatchV1Api, core: CoreV1Api, namespace: str
) -> None:
    # Given a Secret holding the script, and a Job on a failing image allowed one retry
    script = base64.b64encode(b'echo "from the secret"\nfalse\n').decode()
    core.create_namespaced_secret(namespace, {"metadata": {"name": "steps"}, "data": {"steps": script}})
    sim.set_commands(failing=["builder:broken"])
    manifest = job("retried", image="builder:broken", script='eval "$STEPS"', backoffLimit=1)
    env = {"name": "STEPS", "valueFrom": {"secretKeyRef": {"name": "steps", "key": "steps"}}}
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [env]

    # When it runs
    batch.create_namespaced_job(namespace, manifest)
    done = ended(batch, "retried", namespace)

    # Then two pods ran and failed, each printing the Secret's script's echo
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=retried").items
    assert len(pods) == 2 and done.status.failed == 2
    assert core.read_namespaced_pod_log(pods[0].metadata.name, namespace).startswith("from the secret\n")


def test_jobs_list_watch_and_delete_with_their_pods(batch: BatchV1Api, core: CoreV1Api, namespace: str) -> None:
    # Given a finished Job
    batch.create_namespaced_job(namespace, job("build", script="echo hi"))
    ended(batch, "build", namespace)

    # When Jobs are listed and watched from the start
    listed = batch.list_namespaced_job(namespace, label_selector="")
    watched = batch.list_namespaced_job(namespace, watch=True, timeout_seconds=1, _preload_content=False)

    # Then both show it
    assert [item.metadata.name for item in listed.items] == ["build"]
    assert b'"name":"build"' in watched.read()

    # When it is deleted (in the background, as kubectl does), Then its pods go with it
    batch.delete_namespaced_job("build", namespace, propagation_policy="Background")
    wait_until(lambda: not core.list_namespaced_pod(namespace, label_selector="job-name=build").items, timeout=10)
    with pytest.raises(ApiException) as missing:
        batch.read_namespaced_job("build", namespace)
    assert missing.value.status == 404


def test_a_job_restarted_always_or_changed_is_invalid(batch: BatchV1Api, namespace: str) -> None:
    # When a Job's pods would restart Always
    manifest = job("bad")
    manifest["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as invalid:
        batch.create_namespaced_job(namespace, manifest)

    # Then the API server refuses it, naming the field, as Kubernetes does
    assert invalid.value.status == 422
    assert "spec.template.spec.restartPolicy" in str(invalid.value.body)

    # When a Job's template is changed after it was created, Then that is refused too
    batch.create_namespaced_job(namespace, job("good", script="echo hi"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "steps", "image": "builder:2"}]}}}}
    with pytest.raises(ApiException) as immutable:
        batch.patch_namespaced_job("good", namespace, patch)
    assert immutable.value.status == 422 and "field is immutable" in str(immutable.value.body)


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    binary = find_kubectl()
    with KubeSim(ready_delay=0.05) as sim:
        yield Kubectl(binary, sim.url, tmp_path)


def test_kubectl_applies_waits_for_and_reads_the_logs_of_a_job(kubectl: Kubectl, tmp_path: Path) -> None:
    # Given a namespace and a Job in a manifest
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB_MANIFEST)

    # When kubectl applies it, waits for the Job to complete and reads its logs through the Job's selector
    applied = kubectl.run("apply", "-f", str(manifest))
    kubectl.run("wait", "--for=condition=complete", "job/hello", "--timeout=60s")
    logs = kubectl.run("logs", "job/hello")
    listed = kubectl.run("get", "jobs")

    # Then the log is the echo's text and the table counts one completion
    assert "job.batch/hello created" in applied.stdout
    assert logs.stdout == "hello from kubesim\n"
    assert "1/1" in listed.stdout.splitlines()[1]
